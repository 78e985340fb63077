"""backends/tensorrt/build.py and runtime.py, and the session over them, run against stand-ins for
TensorRT's and pycuda's objects (tests/trt_fakes.py): every call our code makes to those libraries
is exercised here on the CPU. What TensorRT itself computes is test_trt_engine.py's, on a GPU."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import graphs
import numpy as np
import pytest
import trt_fakes

from deploy_sdk_backends.tensorrt import build as build_module
from deploy_sdk_backends.tensorrt import runtime
from deploy_sdk_backends.tensorrt.build import BuildProgress, BuildSettings, build
from deploy_sdk_backends.tensorrt.profiles import Profile, ShapeRange
from sdk.devices import GPU
from sdk.errors import InputError, ModelError

ort = pytest.importorskip("onnxruntime")
GPU0 = GPU(0, "NVIDIA H200", (9, 0), 141 * 10**9, "GPU-1111", "0000:1b:00.0")
PROFILE = Profile((("input", ShapeRange((1, 3, 8, 8), (1, 3, 32, 32), (2, 3, 64, 64))),))


@pytest.fixture
def fakes(monkeypatch):
    return trt_fakes.install(monkeypatch)


@pytest.fixture
def fixed(tmp_path) -> Path:
    return Path(graphs.save(graphs.fixed_scale_model(2), tmp_path / "fixed.onnx"))


def _build(trt, path, settings=None, timing=b"", progress=None):
    return build(trt, path, [], PROFILE, settings or BuildSettings(), timing, "fixed (fp32)", progress)


def _image(height=20, width=24, batch=1, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, 3, height, width)).astype(np.float32)


def _reference(path, image):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": image})[0]


def _runner(trt, engine):
    device = runtime.cuda_device(GPU0)
    return runtime.EngineRunner(trt, build_module.logger_for(trt), engine, device)


# -- building -------------------------------------------------------------------------------------


def test_a_build_sets_the_profile_and_keeps_fp32_exact(fakes, fixed):
    trt, _ = fakes
    engine, timing = _build(trt, fixed, BuildSettings(workspace=2**28, optimization_level=5))
    (config,) = trt.builds
    assert config.profiles[0].shapes == {"input": [[1, 3, 8, 8], [1, 3, 32, 32], [2, 3, 64, 64]]}
    assert "TF32" not in config.flags  # TF32 would round fp32 convolutions to 10 mantissa bits
    assert config.pools == {"WORKSPACE": 2**28} and config.builder_optimization_level == 5
    assert engine.startswith(trt_fakes.ENGINE_MAGIC) and timing.startswith(b"cache:")


def test_fp16_is_a_builder_flag_on_tensorrt_10_and_a_strongly_typed_network_on_11(monkeypatch, fixed):
    trt10, _ = trt_fakes.install(monkeypatch, trt_fakes.FakeTensorRT("10.7.0", fp16_flag=True))
    _build(trt10, fixed, BuildSettings(precision="fp16"))
    assert "FP16" in trt10.builds[0].flags
    trt11, _ = trt_fakes.install(monkeypatch, trt_fakes.FakeTensorRT("11.4.0", fp16_flag=False))
    engine, _ = _build(trt11, fixed, BuildSettings(precision="fp16"))
    assert b'"strong": 32' in engine  # 1 << STRONGLY_TYPED


def test_progress_is_reported_from_tensorrts_monitor(fakes, fixed):
    import io

    trt, _ = fakes
    stream = io.StringIO()
    _build(trt, fixed, progress=BuildProgress("fixed", stream))
    assert "Building engine 2/2" in stream.getvalue() and "Building engine done" in stream.getvalue()


def test_a_parser_error_names_the_model_error(fakes, tmp_path):
    trt, _ = fakes
    unspecialised = Path(graphs.save(graphs.runtime_scale_model(), tmp_path / "srcnn3.onnx"))
    with pytest.raises(ModelError, match="cannot parse.*float shape tensor.*ort-cuda"):
        _build(trt, unspecialised)


def test_the_timing_cache_grows_build_after_build(fakes, fixed):
    trt, _ = fakes
    _, first = _build(trt, fixed)
    _, second = _build(trt, fixed, timing=first)
    assert second.count(b"timed") == 2  # the file's entries plus this build's


def test_a_foreign_timing_cache_is_replaced_with_a_warning(fakes, fixed, caplog):
    trt, _ = fakes
    with caplog.at_level(logging.WARNING):
        _, timing = _build(trt, fixed, timing=b"written by TensorRT 8")
    assert "ignoring the TensorRT timing cache" in caplog.text and timing.count(b"timed") == 1


def test_a_cache_tensorrt_refuses_is_never_written_back(monkeypatch, fixed, caplog):
    trt, _ = trt_fakes.install(monkeypatch, trt_fakes.FakeTensorRT(take_timing_cache=False))
    with caplog.at_level(logging.WARNING):
        _, timing = _build(trt, fixed, timing=b"cache:timed earlier|timed before that")
    assert timing == b"" and "did not take the timing cache" in caplog.text


# -- running --------------------------------------------------------------------------------------


def test_an_engine_runs_through_device_memory_and_matches_onnxruntime(fakes, fixed):
    trt, driver = fakes
    engine, _ = _build(trt, fixed)
    runner = _runner(trt, engine)
    image = _image()
    out = runner.run({"input": image})["output"]
    np.testing.assert_allclose(out, _reference(fixed, image), rtol=1e-5, atol=1e-4)
    assert driver.stack() == []  # every push popped
    allocated = set(driver.memory)
    runner.run({"input": _image(seed=1)})  # same shape: the buffers are reused
    assert set(driver.memory) == allocated
    bigger = _image(40, 48, batch=2)
    np.testing.assert_allclose(runner.run({"input": bigger})["output"], _reference(fixed, bigger), rtol=1e-5, atol=1e-4)
    runner.close()
    assert driver.memory == {}  # close() frees the device memory
    runner.close()


def test_a_shape_outside_the_profile_is_refused(fakes, fixed):
    trt, _ = fakes
    runner = _runner(trt, _build(trt, fixed)[0])
    with pytest.raises(InputError, match="outside the engine's optimisation profile"):
        runner.run({"input": _image(80, 24)})


def test_an_engine_from_elsewhere_is_reported_as_incompatible(fakes):
    trt, _ = fakes
    with pytest.raises(runtime.IncompatibleEngine):
        _runner(trt, b"an engine another TensorRT wrote")


def test_one_primary_context_per_gpu_for_the_process_opened_by_pci_bus_id(fakes):
    _, driver = fakes
    first = runtime.cuda_device(GPU0)
    assert runtime.cuda_device(GPU0) is first
    assert driver.retained == ["0000:1b:00.0"] and driver.opened == ["0000:1b:00.0"]


def test_a_gpu_cuda_cannot_open_is_unavailable(fakes):
    from sdk.errors import BackendUnavailableError

    elsewhere = GPU(1, "NVIDIA H200", (9, 0), 141 * 10**9, "GPU-2222", "0000:9a:00.0")
    with pytest.raises(BackendUnavailableError, match=r"cuda:1 .*0000:9a:00.0"):
        runtime.cuda_device(elsewhere)


# -- the session and the Predictor over them --------------------------------------------------------


@pytest.fixture
def trt_machine(fakes, monkeypatch, fresh_plugins, tmp_path):
    from sdk import devices

    monkeypatch.setattr(devices, "cuda_gpus", lambda: (GPU0,))
    monkeypatch.setenv("SDK_CACHE_DIR", str(tmp_path / "cache"))
    return fakes


def test_a_predictor_on_trt_matches_ort_cpu_and_reuses_engines_from_disk(trt_machine, tmp_path):
    from sdk import Predictor

    trt, driver = trt_machine
    model = graphs.save(graphs.runtime_scale_model(), tmp_path / "srcnn3.onnx")
    photo = np.random.default_rng(3).integers(0, 256, (30, 34, 3), dtype=np.uint8)
    expected = Predictor(model, backend="ort-cpu")(photo, scale=3)
    with Predictor(model, backend="trt") as p:
        assert p.backend == "trt"
        got = p(photo, scale=3)
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert len(trt.builds) == 1 and driver.memory == {}
    with Predictor(model, backend="trt") as again:  # a later Predictor: the engine comes from disk
        assert np.array_equal(again(photo, scale=3), got)
    assert len(trt.builds) == 1
    assert driver.retained == ["0000:1b:00.0"] and driver.detached == []  # one context, never released


def test_the_timing_cache_file_survives_a_build_that_could_not_use_it(monkeypatch, fresh_plugins, tmp_path):
    from sdk import Predictor, devices

    trt, _ = trt_fakes.install(monkeypatch, trt_fakes.FakeTensorRT(take_timing_cache=False))
    monkeypatch.setattr(devices, "cuda_gpus", lambda: (GPU0,))
    cache_dir = tmp_path / "cache"
    timing = cache_dir / "tensorrt" / "timing" / "10.7.0-NVIDIA-H200-sm90.cache"
    timing.parent.mkdir(parents=True)
    timing.write_bytes(b"cache:kernels timed by earlier builds")
    monkeypatch.setenv("SDK_CACHE_DIR", str(cache_dir))
    model = graphs.save(graphs.fixed_scale_model(2), tmp_path / "fixed.onnx")
    Predictor(model, backend="trt")(np.zeros((16, 16, 3), np.uint8))
    assert len(trt.builds) == 1
    assert timing.read_bytes() == b"cache:kernels timed by earlier builds"


def test_a_session_closed_from_another_thread_leaves_no_context_behind(trt_machine, tmp_path):
    from sdk import Predictor

    _, driver = trt_machine
    model = graphs.save(graphs.fixed_scale_model(2), tmp_path / "fixed.onnx")
    p = Predictor(model, backend="trt")
    p(np.zeros((16, 16, 3), np.uint8))
    closer = threading.Thread(target=p.close)
    closer.start()
    closer.join()
    assert driver.memory == {} and driver.stack() == [] and driver.detached == []
