"""The openvino backend gives the same pictures as ort-cpu, through the SDK's shared pre/post."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import sdk.plugins
from sdk import BackendUnavailableError, InputError, Predictor, SDKError


@pytest.fixture(scope="module")
def openvino(srcnn3_path):
    with Predictor(srcnn3_path, backend="openvino") as predictor:
        yield predictor


@pytest.fixture(scope="module")
def ort(srcnn3_path):
    with Predictor(srcnn3_path, backend="ort-cpu") as predictor:
        yield predictor


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_runs_on_openvino_on_the_cpu(openvino):
    assert (openvino.backend, openvino.device) == ("openvino", "cpu")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_ort_cpu_at_runtime_scale(openvino, ort, image, scale):
    ours, theirs = openvino(image, scale=scale), ort(image, scale=scale)
    assert ours.shape == theirs.shape == (40 * scale, 56 * scale, 3)
    assert ours.dtype == np.uint8
    assert _max_diff(ours, theirs) <= 1


def test_one_compiled_model_per_factor_serves_every_size(openvino, ort, image):
    # The SDK rewrites the model once per factor (sdk.optimize), so each factor gets its own
    # compiled model; within a factor every image size reuses it.
    wrapper = openvino._session
    for scale, crop in [(2, image[:17, :31]), (3, image), (2, image[5:, 3:]), (3, image[:9])]:
        assert _max_diff(openvino(crop, scale=scale), ort(crop, scale=scale)) <= 1
    factors = [key for key in wrapper.loaded_factors if dict(key)["factor"][2] in (2.0, 3.0)]
    assert len(factors) == 2  # (earlier tests on this Predictor may have loaded other factors)
    for key in factors:
        session = wrapper.session_for(key)
        assert len(session._idle) == 1  # calls one after another reuse one infer request


def test_unoptimised_one_compiled_model_serves_every_size_and_factor(srcnn3_path, image):
    from sdk import Predictor

    plain = Predictor(srcnn3_path, backend="openvino", optimize=False)
    session = plain._session
    compiled = session._compiled
    for scale, crop in [(2, image[:17, :31]), (3, image), (4, image[5:, 3:])]:
        assert plain(crop, scale=scale).shape[0] == crop.shape[0] * scale
    assert session._compiled is compiled
    assert len(session._idle) == 1


def test_batches_match_ort_cpu(openvino, ort, image):
    images = [image, image[:, ::-1], image[:20]]
    for ours, theirs in zip(openvino.predict_batch(images, scale=2), ort.predict_batch(images, scale=2)):
        assert _max_diff(ours, theirs) <= 1


def test_bgr_in_gives_bgr_out(openvino, image):
    rgb = openvino(image, scale=2)
    bgr = openvino(np.ascontiguousarray(image[..., ::-1]), scale=2, color="bgr")
    assert np.array_equal(rgb, bgr[..., ::-1])


def test_raw_outputs_are_writeable_float32_arrays_of_their_own(openvino, image):
    feeds = openvino.pipeline.feeds(openvino.pipeline.prepare(image[None], 2).tensor, 2)
    first = openvino.run(feeds)["output"]
    second = openvino.run(feeds)["output"]
    assert first.dtype == np.float32 and first.flags.writeable and first.flags.owndata
    before = second.copy()
    first += 1000  # the SDK post-processes in place: outputs must not share OpenVINO's buffers
    assert np.array_equal(second, before)


def test_reports_the_model_signature(openvino):
    inputs = {info.name: info for info in openvino.inputs}
    assert set(inputs) == {"input", "factor"}
    assert inputs["input"].shape[1] == 3 and inputs["input"].shape[2] is None  # dynamic height
    assert inputs["factor"].shape == (4,) and inputs["factor"].dtype == np.float32


def test_concurrent_calls_each_get_an_infer_request(openvino, image):
    expected = openvino(image, scale=2)
    results, errors = [], []

    def call():
        try:
            results.append(openvino(image, scale=2))
        except Exception as exc:  # collected, so a failure shows instead of hanging the thread
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all(np.array_equal(result, expected) for result in results)


def test_threads_option_reaches_openvino(srcnn3_path):
    with Predictor(srcnn3_path, backend="openvino", threads=1) as predictor:
        assert predictor._session.ov_property("INFERENCE_NUM_THREADS") == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision": "f64"}, "f32"),
        ({"threads": 0}, "positive whole number"),
        ({"intra_op_num_threads": 2}, "the openvino backend takes"),
        ({"performance_hint": "FAST"}, "LATENCY"),
    ],
)
def test_bad_options_say_what_to_pass(srcnn3_path, options, message):
    with pytest.raises(InputError, match=message):
        Predictor(srcnn3_path, backend="openvino", **options)


def test_a_closed_session_says_so(srcnn3_path, image):
    predictor = Predictor(srcnn3_path, backend="openvino")
    session = predictor._session
    predictor.close()
    with pytest.raises(SDKError, match="closed"):
        session.run(predictor.pipeline.feeds(predictor.pipeline.prepare(image[None], 2).tensor, 2))
    session.close()  # twice is harmless


class _CoreThatCannotCompile:
    """Stands in for ov.Core when OpenVINO meets an operator it lacks."""

    def read_model(self, path):
        return path

    def compile_model(self, network, device, config):
        raise RuntimeError("Unsupported operator: Resize with mode 'cubic'")


def test_a_model_openvino_cannot_compile_is_unavailable_not_a_crash(srcnn3_path, monkeypatch):
    import sdk_openvino.backend

    monkeypatch.setattr(sdk_openvino.backend, "core", _CoreThatCannotCompile)
    with pytest.raises(BackendUnavailableError, match="openvino cannot compile .*backend='ort-cpu'"):
        Predictor(srcnn3_path, backend="openvino")
    # With ort-cpu out of the way auto tries openvino, and its refusal lists openvino's reason.
    monkeypatch.setenv("SDK_DISABLE_PLUGINS", "ort-cpu")
    sdk.plugins.reset()
    try:
        with pytest.raises(BackendUnavailableError, match=r"no backend can run on cpu:[\s\S]*\n  openvino: "):
            Predictor(srcnn3_path, backend="auto", device="cpu")
    finally:
        monkeypatch.delenv("SDK_DISABLE_PLUGINS")
        sdk.plugins.reset()


def test_probe_without_openvino_says_what_to_install(monkeypatch):
    from sdk_openvino import OpenVinoBackend

    from sdk.devices import Device

    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    found = OpenVinoBackend().probe(Device("cpu"))
    assert not found.ok and "pip install sdk-openvino" in found.reason
    assert not OpenVinoBackend().probe(Device("cuda", 0)).ok  # a CPU-only backend never claims a GPU
