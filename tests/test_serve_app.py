"""create_app in-process (as users mount it): other pipelines, static sizes, the batcher."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("starlette", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

import graphs
from serving import decode, encode, max_diff, picture

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
        monkeypatch.setattr(p.pipeline, "run_tensor", lambda s, t, *rest: shapes.append(t.shape) or run(s, t, *rest))
        for size in ((70, 45), (20, 25)):  # larger: windows of 32; smaller: padded up to 32, cropped back
            image = picture(*size, seed=3)
            response = client.post("/v1/models/static32/upscale?scale=2", content=encode(image))
            assert response.status_code == 200, response.text
            assert max_diff(decode(response.content), p(image, scale=2)) <= 1
        assert set(shapes) == {(1, 3, 32, 32)}


def test_the_batcher_batches_only_while_someone_is_coming_and_drops_cancelled_jobs():
    from sdk.serve.batcher import Batcher

    calls = []

    def run(tensor, scale, cancel):
        calls.append(len(tensor))
        time.sleep(0.05)
        return tensor * scale

    batcher = Batcher(run, max_batch=4, max_delay_s=0.5)
    try:
        started = time.perf_counter()
        alone = batcher.submit(np.ones((1, 1, 2, 2), np.float32), 2).result(5)
        assert time.perf_counter() - started < 0.4  # nobody coming: no wait for a fuller batch
        assert alone.sum() == 8
        batcher.preparing(+1)  # a request is decoding: the next batch waits for it (up to the delay)
        first = batcher.submit(np.ones((1, 1, 2, 2), np.float32), 3)
        time.sleep(0.05)
        second = batcher.submit(np.full((2, 1, 2, 2), 2, np.float32), 3)
        batcher.preparing(-1)
        assert first.result(5).sum() == 12 and second.result(5).sum() == 48
        assert calls[-1] == 3  # one engine call for both requests' tiles
        blocker = threading.Event()
        batcher.call(lambda: blocker.wait(5))
        dropped = batcher.submit(np.ones((1, 1, 2, 2), np.float32), 2)
        assert dropped.cancel()  # a client hung up before its tiles ran
        blocker.set()
        kept = batcher.submit(np.ones((1, 1, 2, 2), np.float32), 2).result(5)
        assert kept.sum() == 8 and calls[-1] == 1
    finally:
        batcher.close(5)


def test_a_lone_request_runs_on_its_own_thread_and_the_batcher_still_runs_one_call_at_a_time():
    from sdk.serve.batcher import Batcher

    calls, release = [], threading.Event()

    def run(tensor, scale, cancel):
        calls.append((threading.current_thread().name, len(tensor)))
        if tensor[0, 0, 0, 0] == 7:  # the blocking call
            release.wait(5)
        return tensor * scale

    batcher = Batcher(run, max_batch=4, max_delay_s=0.5)
    tiles = np.ones((1, 1, 2, 2), np.float32)
    try:
        batcher.preparing(+1)  # the caller, as the app counts it while it decodes and prepares
        alone = batcher.submit(tiles, 2, inline=True)
        batcher.preparing(-1)
        assert alone.done() and alone.result().sum() == 8
        assert calls[-1] == (threading.current_thread().name, 1)  # no hand-over to the batcher's thread

        batcher.preparing(+2)  # someone else is coming: queue, so that the two may share a call
        first = batcher.submit(tiles, 3, inline=True)
        second = batcher.submit(np.full((2, 1, 2, 2), 2, np.float32), 3, inline=True)
        batcher.preparing(-2)
        assert first.result(5).sum() == 12 and second.result(5).sum() == 48
        assert calls[-1] == ("sdk-serve-batcher", 3)

        blocking = threading.Thread(target=lambda: batcher.submit(np.full((1, 1, 2, 2), 7, np.float32), 1, inline=True))
        blocking.start()  # runs inline on that thread and holds the engine
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = batcher.submit(tiles, 2, inline=True)  # the engine is busy: this one queues
        time.sleep(0.1)
        assert not queued.done() and len(calls) == 3  # nothing ran beside the inline call
        release.set()
        blocking.join(5)
        assert queued.result(5).sum() == 8 and calls[-1] == ("sdk-serve-batcher", 1)
    finally:
        release.set()
        batcher.close(5)


def test_the_inference_routes_answer_alike_straight_or_through_the_router():
    """The gate sends POST .../upscale and .../infer straight to their endpoints; mounted under a
    prefix, they go through Starlette's router. Same answers, errors and metrics either way."""
    from prometheus_client.parser import text_string_to_metric_families
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from sdk import Predictor
    from sdk.serve import create_app

    with Predictor("srcnn3", backend="ort-cpu") as p:
        app = create_app(p)
        image = encode(picture(20, 24, seed=3))
        routed, starlette_app = [], app.app

        async def router(scope, receive, send):  # what reaches the Starlette app behind the gate
            routed.append((scope.get("method"), scope.get("path")))
            await starlette_app(scope, receive, send)

        app.app = router
        try:
            with TestClient(app) as direct, TestClient(Starlette(routes=[Mount("/sr", app=app)])) as mounted:
                answers = [
                    client.post(prefix + "/v1/models/srcnn3/upscale?scale=2", content=image)
                    for client, prefix in ((direct, ""), (mounted, "/sr"))
                ]
                assert [a.status_code for a in answers] == [200, 200] and answers[0].content == answers[1].content
                for client, prefix in ((direct, ""), (mounted, "/sr")):
                    wrong = client.post(prefix + "/v1/models/nope/upscale?scale=2", content=image)
                    assert wrong.status_code == 404 and "srcnn3" in wrong.json()["error"]
                    assert client.get(prefix + "/v1/models/srcnn3/upscale").status_code == 405
                    slash = client.post(
                        prefix + "/v1/models/srcnn3/upscale/?scale=2", content=image, follow_redirects=False
                    )
                    assert slash.status_code == 307  # the router's redirect to the path without the slash
                    assert set(client.post(prefix + "/v2/models/srcnn3/infer", content=b"{").json()) == {"error"}
                text = direct.get("/metrics").text
        finally:
            app.server.close()
    counts = {
        (s.labels["route"], s.labels["status"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "sdk_serve_requests_total"
    }
    assert counts[("/v1/models/{name}/upscale", "200")] == 2
    assert counts[("/v1/models/{name}/upscale", "404")] == 2
    assert counts[("/v2/models/{name}/infer", "400")] == 2
    assert ("POST", "/sr/v1/models/srcnn3/upscale") in routed and ("POST", "/v1/models/srcnn3/upscale") not in routed


def test_an_image_that_runs_whole_in_a_worker_is_not_stitched(monkeypatch):
    """A whole image's finished result is the answer's pixels: stitching it (a copy of the whole result
    into a new array, and of the input into a stack of one) is for windows only."""
    from sdk import Predictor, tiling

    def no_stitching(*args, **kwargs):
        raise AssertionError("a whole image went through tiling.upscale_tiled")

    image = picture(200, 180, seed=6)  # its x2 result is over LOOP_PIXELS: a worker thread, one window
    with Predictor("srcnn3", backend="ort-cpu") as p, client_for(p) as client:
        monkeypatch.setattr(tiling, "upscale_tiled", no_stitching)
        answer = client.post("/v1/models/srcnn3/upscale?scale=2", content=encode(image))
        assert answer.status_code == 200, answer.text
        assert max_diff(decode(answer.content), p(image, scale=2)) == 0


def test_a_small_image_runs_on_the_event_loop_and_a_timeout_still_gives_its_place_up(monkeypatch):
    """Small images skip the worker threads (decoding, pre/post and encoding on the loop); a request
    waiting on a busy engine is still answered 504 in time, and its job is dropped unrun."""
    from sdk import Predictor
    from sdk.serve.upscaling import ImagePath

    def no_worker(*args):
        raise AssertionError("a small image went to a worker thread")

    monkeypatch.setattr(ImagePath, "_upscale_sync", no_worker)
    image = picture(16, 20, seed=5)
    with Predictor("srcnn3", backend="ort-cpu") as p, client_for(p, timeout_s=0.5) as client:
        server = client.app.server
        answer = client.post("/v1/models/srcnn3/upscale?scale=2", content=encode(image))
        assert answer.status_code == 200 and max_diff(decode(answer.content), p(image, scale=2)) == 0
        release = threading.Event()
        server.batcher.call(lambda: release.wait(10))  # the engine is busy
        started = time.perf_counter()
        late = client.post("/v1/models/srcnn3/upscale?scale=2", content=encode(image))
        assert late.status_code == 504 and time.perf_counter() - started < 5
        calls = server.batcher.calls
        release.set()
        deadline = time.monotonic() + 5
        while server.batcher.calls == calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # time enough for the engine to run the timed-out job, were it still queued
        assert server.batcher.calls == calls + 1  # the blocking call ended; the timed-out job never ran
        assert server.admission.admitted == 0
        assert client.post("/v1/models/srcnn3/upscale?scale=2", content=encode(image)).status_code == 200


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
        assert coding.quick_to_encode("png", images.Decoded(pixels))  # may be written on the event loop
    assert not coding.quick_to_encode("png", images.Decoded(pixels, alpha=alpha))  # Pillow's: a worker's job
    assert not coding.quick_to_encode("webp", None) and coding.quick_to_encode("jpeg", None)
    monkeypatch.setattr(coding, "_fpng", lambda: None)
    assert np.array_equal(decode(coding.encode(pixels, "png", None)[0]), pixels)


def test_the_server_asks_onnxruntime_on_the_cpu_not_to_spin(monkeypatch, fresh_plugins):
    import sdk.predictor
    from sdk.errors import BackendUnavailableError
    from sdk.serve.predictor import open_predictor

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


def test_server_options_are_the_backend_s_own_and_optional(monkeypatch, caplog):
    """The server names no engine: it asks the backend (Backend.server_options). A plugin that never
    heard of it gets the default (nothing), one whose override fails is opened without, and options
    the backend would not accept are never passed."""
    import sdk.predictor
    import sdk.selection
    from sdk import Availability, Backend
    from sdk.devices import Device
    from sdk.serve.predictor import open_predictor

    class Plain(Backend):
        name, devices = "plain", ("cpu",)

        def _probe(self, device):
            return Availability.yes()

        def create_session(self, model, device, options):
            raise AssertionError("not opened here")

    class Wishes(Plain):
        options = ("threads",)

        def server_options(self, device):
            return {"threads": 1, "unknown_knob": 2}

    class Broken(Plain):
        def server_options(self, device):
            raise RuntimeError("plugin bug")

    monkeypatch.setattr(sdk.predictor, "Predictor", lambda model, backend, device, pipeline, **options: options)
    for backend, expected in ((Plain(), {}), (Wishes(), {"threads": 1}), (Broken(), {})):
        monkeypatch.setattr(sdk.selection, "candidates", lambda name, device, b=backend: [(b, Device("cpu"))])
        assert open_predictor("srcnn3", backend.name) == expected
    assert "plugin bug" in caplog.text


def test_a_request_called_off_during_its_last_window_is_not_encoded(monkeypatch):
    """The work of a timed-out request stops at every step after it: here, the encoding it would
    still have had ahead (seconds for a large PNG)."""
    from sdk import Cancelled, Predictor
    from sdk.serve import coding, create_app, upscaling

    with Predictor("srcnn3", backend="ort-cpu") as p:
        app = create_app(p, tile=64)
        try:
            path = app.state.server.image_path
            ticket = upscaling._Ticket(path.batcher)
            finish, encoded = path.runner.finish, []
            monkeypatch.setattr(path.runner, "finish", lambda *a: (ticket.cancel(), finish(*a))[1])
            monkeypatch.setattr(coding, "encode", lambda *a: encoded.append(1))
            header = coding.open_header(encode(picture(40, 40)), 10**8)
            plan = path.limits.image(40, 40, 2)
            with pytest.raises(Cancelled):
                path._upscale_sync(header, 2, "png", plan, ticket)
            assert encoded == []
        finally:
            app.state.server.close()
