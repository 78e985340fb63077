"""create_app in-process (as users mount it): other pipelines, static sizes, the engine's batching."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("starlette", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

import graphs  # noqa: E402
from serving import decode, encode, max_diff, picture  # noqa: E402

# Starlette 1.x would rather its TestClient ran on httpx2; on httpx it works the same.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def client_for(predictor, **settings):
    from starlette.testclient import TestClient

    from sdk.serve import create_app

    return TestClient(create_app(predictor, **settings))


def test_y_channel_model_equals_predictor_whole_and_in_windows():
    from sdk import Predictor

    with Predictor("espcn", backend="ort-cpu") as p, client_for(p, tile=32) as client:
        for image, tolerance in ((picture(30, 28, seed=1), 0), (picture(90, 75, seed=2), 1)):
            response = client.post("/v1/models/espcn/upscale", content=encode(image))  # fixed scale: none needed
            assert response.status_code == 200, response.text
            assert max_diff(decode(response.content), p(image)) <= tolerance
        assert client.post("/v1/models/espcn/upscale?scale=2", content=encode(picture(8, 8))).status_code == 422


def test_static_size_model_runs_windows_of_exactly_its_size(tmp_path, monkeypatch):
    from onnx import TensorProto, helper

    from sdk import Predictor

    model = graphs.runtime_scale_model()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32]))
    path = graphs.save(model, tmp_path / "static32.onnx")
    with Predictor(path, backend="ort-cpu") as p, client_for(p) as client:
        shapes = []
        run = p.pipeline.run_tensor
        monkeypatch.setattr(p.pipeline, "run_tensor", lambda s, t, scale: shapes.append(t.shape) or run(s, t, scale))
        for size in ((70, 45), (20, 25)):  # larger: windows of 32; smaller: padded up to 32, cropped back
            image = picture(*size, seed=3)
            response = client.post("/v1/models/static32/upscale?scale=2", content=encode(image))
            assert response.status_code == 200, response.text
            assert max_diff(decode(response.content), p(image, scale=2)) <= 1
        assert {s for s in shapes} == {(1, 3, 32, 32)}


def test_engine_batches_only_while_someone_is_coming_and_drops_cancelled_jobs():
    from sdk.serve.engine import Engine

    calls = []

    def run(tensor, scale):
        calls.append(len(tensor))
        time.sleep(0.05)
        return tensor * scale

    engine = Engine(run, max_batch=4, max_delay_s=0.5)
    try:
        started = time.perf_counter()
        alone = engine.submit(np.ones((1, 1, 2, 2), np.float32), 2).result(5)
        assert time.perf_counter() - started < 0.4  # nobody coming: no wait for a fuller batch
        assert alone.sum() == 8
        engine.preparing(+1)  # a request is decoding: the next batch waits for it (up to the delay)
        first = engine.submit(np.ones((1, 1, 2, 2), np.float32), 3)
        time.sleep(0.05)
        second = engine.submit(np.full((2, 1, 2, 2), 2, np.float32), 3)
        engine.preparing(-1)
        assert first.result(5).sum() == 12 and second.result(5).sum() == 48
        assert calls[-1] == 3  # one engine call for both requests' tiles
        blocker = threading.Event()
        engine.call(lambda: blocker.wait(5))
        dropped = engine.submit(np.ones((1, 1, 2, 2), np.float32), 2)
        assert dropped.cancel()  # a client hung up before its tiles ran
        blocker.set()
        kept = engine.submit(np.ones((1, 1, 2, 2), np.float32), 2).result(5)
        assert kept.sum() == 8 and calls[-1] == 1
    finally:
        engine.close(5)


def test_settings_are_checked():
    from sdk.errors import InputError
    from sdk.serve import ServeSettings

    with pytest.raises(InputError, match="max_batch"):
        ServeSettings(max_batch=0)
    with pytest.raises(InputError, match="unknown server setting"):
        ServeSettings().replace(max_bach=3)
    with pytest.raises(InputError, match="token"):
        ServeSettings(token="")


def test_png_answers_decode_to_the_same_pixels_by_either_writer(monkeypatch):
    """fpng writes the plain answers; one that carries a profile, EXIF or alpha (or any, without fpng)
    is Pillow's. Either way a valid PNG of exactly the pixels."""
    import io

    from PIL import Image

    from sdk import images
    from sdk.serve import coding

    pixels = picture(37, 53, seed=4)
    plain, content_type = coding.encode(pixels, "png", images.Decoded(pixels))
    assert content_type == "image/png" and plain.startswith(b"\x89PNG\r\n\x1a\n")
    assert np.array_equal(decode(plain), pixels)
    alpha = np.full((37, 53), 200, np.uint8)
    with_alpha, _ = coding.encode(pixels, "png", images.Decoded(pixels, icc_profile=b"not used", alpha=alpha))
    opened = Image.open(io.BytesIO(with_alpha))
    assert opened.mode == "RGBA" and opened.info.get("icc_profile") == b"not used"
    assert np.array_equal(np.asarray(opened)[..., :3], pixels)
    if coding._fpng() is not None:
        assert plain != images.encode(pixels, "PNG", None, **coding._FAST["PNG"])  # really fpng's
    monkeypatch.setattr(coding, "_fpng", lambda: None)
    assert np.array_equal(decode(coding.encode(pixels, "png", None)[0]), pixels)


def test_the_server_asks_onnxruntime_on_the_cpu_not_to_spin(monkeypatch, fresh_plugins):
    import sdk.predictor
    from sdk.errors import BackendUnavailableError
    from sdk.serve.commands import open_predictor

    seen = []

    def fake(model, backend="auto", device="auto", pipeline=None, **options):
        seen.append(options)
        if options and backend == "auto" and fake.refuse:
            raise BackendUnavailableError("no backend could start")
        return options

    fake.refuse = False
    monkeypatch.setattr(sdk.predictor, "Predictor", fake)
    monkeypatch.setenv("SDK_LOAD_PLUGINS", "onnxruntime")  # an installed plugin (openvino) would come first
    fresh_plugins.reset()
    assert open_predictor("srcnn3", "ort-cpu") == {"session_config": {"session.intra_op.allow_spinning": "0"}}
    assert open_predictor("srcnn3", "auto")["session_config"]  # ort-cpu is the first backend here
    fake.refuse = True  # the option's backends cannot start: "auto" then chooses among all, without it
    assert open_predictor("srcnn3", "auto") == {} and seen[-2] and seen[-1] == {}
