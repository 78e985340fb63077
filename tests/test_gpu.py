"""ort-cuda on a real GPU. Marked `gpu`: skipped, with the reason, where there is no CUDA GPU or
onnxruntime is the CPU build (tests/conftest.py). benchmarks/gpu/check.sh runs them on a GPU machine."""

import threading

import graphs
import numpy as np
import pytest

import sdk
from deploy_sdk_backends.onnxruntime import OrtCudaBackend
from sdk import memory
from sdk.devices import Device, cuda_gpus
from sdk.model import Model


def _ort_cuda_missing() -> str:
    if not cuda_gpus():
        return "needs a CUDA GPU: NVML finds none on this machine (benchmarks/gpu/check.sh runs these on one)"
    try:
        import onnxruntime
    except ImportError:
        return "needs onnxruntime-gpu: onnxruntime is not installed"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"needs onnxruntime-gpu: onnxruntime {onnxruntime.__version__} here is the CPU build"
    return ""


# tests/conftest.py skips `gpu` tests where there is no GPU; these also need the GPU build of ORT.
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(_ort_cuda_missing()), reason=_ort_cuda_missing() or "-")]


def used_bytes() -> int:
    """Memory in use on cuda:0, by NVML (every process's: the check runs alone on its machine)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(cuda_gpus()[0].uuid)
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    finally:
        pynvml.nvmlShutdown()


def grey_levels(a, b) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("name", ["srcnn", "srcnn3", "espcn"])
def test_ort_cuda_equals_ort_cpu_within_one_grey_level(name, photo):
    with sdk.Predictor(name, backend="ort-cuda") as gpu, sdk.Predictor(name, backend="ort-cpu") as cpu:
        assert gpu.session.providers[0] == "CUDAExecutionProvider"
        assert grey_levels(gpu(photo, scale=3), cpu(photo, scale=3)) <= 1


def test_community_fp16_model_equals_ort_cpu(tmp_path, photo):
    path = graphs.save(graphs.community_fp16_model(), tmp_path / "community-fp16.onnx")
    declared = {"value_range": [0, 1], "color": "rgb", "scale": 2}
    with (
        sdk.Predictor(path, backend="ort-cuda", pipeline=declared) as gpu,
        sdk.Predictor(path, backend="ort-cpu", pipeline=declared) as cpu,
    ):
        assert gpu.pipeline.input_dtype == np.float16
        assert grey_levels(gpu(photo), cpu(photo)) <= 1


def test_cuda0_and_auto_pick_ort_cuda():
    with sdk.Predictor("srcnn3", device="cuda:0") as named:
        assert (named.backend, named.device) == ("ort-cuda", "cuda:0")
    with sdk.Predictor("srcnn3") as auto:
        assert (auto.backend, auto.device) == ("ort-cuda", "cuda:0")


def test_a_session_that_fell_back_to_the_cpu_is_refused(capfd):
    # A device id CUDA does not have: ORT cannot create its CUDA provider and falls back to the CPU
    # without raising (and prints a banner); ort-cuda must refuse that session, and keep stdout clean.
    with pytest.raises(sdk.BackendUnavailableError, match="fell back"):
        OrtCudaBackend().create_session(
            Model("srcnn3"), Device("cuda", 0), {"provider_options": {"device_id": len(cuda_gpus()) + 7}}
        )
    assert capfd.readouterr().out == ""


def test_io_binding_keeps_tensors_on_the_device_between_windows(photo):
    big = np.tile(photo, (3, 3, 1))  # 144 x 120: several 64-pixel windows
    with sdk.Predictor("srcnn", backend="ort-cuda") as predictor:  # fixed scale: one engine session
        session = predictor.session
        calls = []
        real = session._session.run_with_iobinding

        def recording(binding, *args):
            real(binding, *args)
            key, inputs, outputs = session._buffers
            value = inputs["input"]
            calls.append((key, value.device_name(), value.data_ptr(), outputs[0].device_name(), outputs[0].data_ptr()))

        session._session.run_with_iobinding = recording
        plan = predictor.plan(big.shape[:2], tile=64, max_batch=1)  # one window per engine call
        assert plan.tiled
        tiled = predictor.run_plan(big[None], None, plan)[0]
        whole = predictor(big, tile=0)
    assert len(calls) > 3
    assert all(c[1] == c[3] == "cuda" for c in calls)
    # A window of the shape before it runs in the same device buffers: nothing allocated per window.
    repeats = [(a, b) for a, b in zip(calls, calls[1:]) if a[0] == b[0]]
    assert repeats and all(a[2:] == b[2:] for a, b in repeats)
    assert grey_levels(tiled, whole) <= 1


def test_a_4000x3000_photo_x3_stays_within_the_gpu_memory_budget():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    with sdk.Predictor("srcnn3", backend="ort-cuda") as predictor:
        predictor(photo[:64, :64], scale=3)  # the context, cuDNN and the weights: not the budget's
        before = used_bytes()
        budget = memory.budget(None, predictor.device)
        out = predictor(photo, scale=3)
        grown = used_bytes() - before
    assert out.shape == (9000, 12000, 3)
    assert grown <= budget, f"GPU memory grew {grown / 2**20:.0f} MiB for a budget of {budget / 2**20:.0f} MiB"


def test_two_predictors_share_one_gpu(photo):
    with sdk.Predictor("srcnn3", backend="ort-cuda") as a, sdk.Predictor("espcn", backend="ort-cuda") as b:
        alone = (a(photo, scale=3), b(photo, scale=3))
        results = {}

        def work(key, predictor):
            results[key] = [predictor(photo, scale=3) for _ in range(5)]

        threads = [threading.Thread(target=work, args=(k, p)) for k, p in (("a", a), ("b", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(np.array_equal(r, alone[0]) for r in results["a"])
    assert all(np.array_equal(r, alone[1]) for r in results["b"])


def test_close_frees_the_gpu_memory():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (700, 700, 3), dtype=np.uint8)
    with sdk.Predictor("srcnn3", backend="ort-cuda"):
        pass  # the CUDA context and cuDNN handles stay for the process; measure from here
    before = used_bytes()
    predictor = sdk.Predictor("srcnn3", backend="ort-cuda", memory_budget="1GiB")
    predictor(image, scale=3)
    held = used_bytes() - before
    predictor.close()
    left = used_bytes() - before
    assert held > 256 * 2**20, f"the run should hold its arena (held {held / 2**20:.0f} MiB)"
    assert left <= 0.1 * held, f"close() left {left / 2**20:.0f} of {held / 2**20:.0f} MiB in use"
