"""ort-cuda's CPU-side pieces, exercised here where no GPU is: the IO binding's device buffers (run
on the real onnxruntime with buffers bound on "cpu", the same API calls ort-cuda makes on "cuda"),
and the probe kept off stdout so that `sdk backends --json` stays JSON."""

import json
import types

import graphs
import numpy as np
import pytest

import sdk
from deploy_sdk_backends import onnxruntime as ort_backend
from sdk import cli
from sdk.devices import GPU, Device
from sdk.model import Model


@pytest.fixture
def bound_session(runtime_model):
    """An ort-cpu session taken down ort-cuda's IO-binding path, its buffers on the host."""
    import onnxruntime

    session = ort_backend.OrtSession(onnxruntime, Model(runtime_model), [ort_backend.CPU], {}, Device("cpu"))
    plain = ort_backend.OrtSession(onnxruntime, Model(runtime_model), [ort_backend.CPU], {}, Device("cpu"))
    session._bound, session._ort_device = True, "cpu"
    yield session, plain
    session.close()
    plain.close()


def _feeds(rng, size=(20, 24), factor=2.0):
    return {
        "input": rng.uniform(0, 255, (1, 3, *size)).astype(np.float32),
        "factor": np.array([1, 1, factor, factor], np.float32),
    }


def test_bound_windows_reuse_their_buffers_and_equal_a_plain_run(bound_session):
    session, plain = bound_session
    rng = np.random.default_rng(0)
    first = _feeds(rng)
    out = session.run(first)["output"]
    np.testing.assert_array_equal(out, plain.run(first)["output"])
    key, inputs, outputs = session._buffers
    pointers = (inputs["input"].data_ptr(), outputs[0].data_ptr())
    for _ in range(3):  # more windows of the same shape: new pixels, the same device buffers
        window = _feeds(rng)
        np.testing.assert_array_equal(session.run(window)["output"], plain.run(window)["output"])
        assert (session._buffers[1]["input"].data_ptr(), session._buffers[2][0].data_ptr()) == pointers
    assert session._buffers[0] == key


def test_a_new_shape_or_factor_gets_new_buffers_and_drops_the_old(bound_session):
    session, plain = bound_session
    rng = np.random.default_rng(1)
    session.run(_feeds(rng))
    before = session._buffers[0]
    for feeds in (_feeds(rng, size=(16, 16)), _feeds(rng, size=(16, 16), factor=3.0)):
        out = session.run(feeds)["output"]
        np.testing.assert_array_equal(out, plain.run(feeds)["output"])
        assert session._buffers[0] != before and out.shape[-1] == 16 * int(feeds["factor"][-1])
        before = session._buffers[0]


def test_close_drops_the_binding_and_buffers(bound_session):
    session, _ = bound_session
    session.run(_feeds(np.random.default_rng(2)))
    session.close()
    assert session._buffers == () and session._binding is None and session._session is None


def test_fp16_community_model_runs_bound(tmp_path, photo):
    import onnxruntime

    path = graphs.save(graphs.community_fp16_model(), tmp_path / "fp16.onnx")
    session = ort_backend.OrtSession(onnxruntime, Model(path), [ort_backend.CPU], {}, Device("cpu"))
    session._bound, session._ort_device = True, "cpu"
    x = (photo.transpose(2, 0, 1)[None] / 255).astype(np.float16)
    out = session.run({"input": x})["output"]
    assert out.dtype == np.float16 and out.shape == (1, 3, 80, 96)


class _ChattyOrt(types.SimpleNamespace):
    """onnxruntime-gpu as the probe meets it: lists CUDA, and preload_dlls prints what it misses."""

    def get_available_providers(self):
        return [ort_backend.CUDA, ort_backend.CPU]

    def preload_dlls(self, directory=None):
        print("Failed to load libcudnn.so.9: cannot open shared object file")
        print("Please follow https://onnxruntime.ai/docs/install/#cuda-and-cudnn to install CUDA.")


def test_the_cuda_probe_keeps_preload_chatter_off_stdout(monkeypatch, capfd, fresh_plugins):
    chatty = _ChattyOrt(__version__="1.31.1", __file__="/nonexistent/onnxruntime/__init__.py")
    monkeypatch.setattr(ort_backend, "_import_ort", lambda: chatty)
    monkeypatch.setattr(ort_backend, "gpu", lambda device: GPU(0, "NVIDIA H200", (9, 0), 141 * 2**30))
    assert cli.main(["backends", "--json"]) == 0
    captured = capfd.readouterr()
    listing = {r["name"]: r for r in json.loads(captured.out)}  # stdout is JSON and nothing else
    assert listing["ort-cuda"]["available"]
    assert "Failed to load libcudnn.so.9" in captured.err


def test_native_stdout_of_a_probe_goes_to_stderr(monkeypatch, capfd, fresh_plugins):
    """Engines' C code writes to descriptor 1 directly (MNN's printf, ORT's fallback banner)."""
    import ctypes
    import os

    def chatty_probe(self, device):
        os.write(1, b"native banner on fd 1\n")
        ctypes.CDLL(None).printf(b"buffered printf from C\n")
        print("python print")
        return sdk.Availability.yes()

    monkeypatch.setattr(ort_backend.OrtCpuBackend, "_probe", chatty_probe)
    assert cli.main(["backends", "--json"]) == 0
    captured = capfd.readouterr()
    assert {r["name"] for r in json.loads(captured.out)} >= {"ort-cpu", "ort-cuda"}
    for text in ("native banner on fd 1", "buffered printf from C", "python print"):
        assert text in captured.err


def test_a_second_thread_on_the_session_binds_its_own_buffers(bound_session):
    """The kept buffers serve one caller at a time; another thread's call must neither wait for them
    nor write into them (which would hand the first caller another image's output)."""
    import threading

    session, plain = bound_session
    rng = np.random.default_rng(3)
    windows = [_feeds(rng) for _ in range(8)]
    expected = [plain.run(w)["output"] for w in windows]
    results: dict[int, np.ndarray] = {}

    def work(i):
        results[i] = session.run(windows[i])["output"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(windows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(results[i], want)
    with session._buffers_lock:  # held by someone else: this call takes the one-off path
        np.testing.assert_array_equal(session.run(windows[0])["output"], expected[0])
