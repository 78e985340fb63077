"""ort-cpu's opt-in precision="int8": statically quantised, calibrated on the package's own photos."""

import platform

import graphs
import numpy as np
import pytest

import sdk
from sdk.errors import BackendUnavailableError


@pytest.mark.slow
def test_int8_runs_close_to_fp32_and_is_never_the_default(photo):
    pytest.importorskip("onnxruntime.quantization", reason="needs onnxruntime's quantization tools")
    pytest.importorskip("skimage", reason="calibration uses scikit-image's photos: pip install scikit-image")
    pytest.importorskip("sklearn", reason="calibration uses scikit-learn's photos: pip install scikit-learn")
    fp32 = sdk.Predictor("srcnn3", backend="ort-cpu")
    int8 = sdk.Predictor("srcnn3", backend="ort-cpu", precision="int8")
    a, b = fp32(photo, scale=3), int8(photo, scale=3)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert mse > 0  # it really is another computation
    assert 10 * np.log10(255**2 / mse) > 35  # and a close one
    quantised = _loaded_model(int8)
    assert "QLinearConv" in {node.op_type for node in quantised.graph.node}
    assert "QLinearConv" not in {node.op_type for node in _loaded_model(fp32).graph.node}
    # Where this CPU's kernels saturate pairs of products, the weights must be small enough not to.
    widest = max(
        np.abs(_weights(quantised, node).astype(np.int32)).max()
        for node in quantised.graph.node
        if node.op_type == "QLinearConv"
    )
    assert widest <= (64 if _pairs_saturate() else 127)


def test_int8_calibrates_through_the_declared_pipeline(tmp_path, photo):
    """A community export takes 0..1 and says so only in the caller's pipeline=; calibrated through
    what the file alone suggests (0..255), every range was 255 times too wide and pictures were ruined
    (Real-ESRGAN Compact: 11.6 dB against fp32)."""
    pytest.importorskip("onnxruntime.quantization", reason="needs onnxruntime's quantization tools")
    pytest.importorskip("skimage", reason="calibration uses scikit-image's photos: pip install scikit-image")
    pytest.importorskip("sklearn", reason="calibration uses scikit-learn's photos: pip install scikit-learn")
    path = graphs.save(graphs.community_model(scale=2), tmp_path / "compact-like.onnx")
    declared = {"color": "rgb", "value_range": (0, 1), "scale": 2}
    fp32 = sdk.Predictor(path, backend="ort-cpu", pipeline=declared)(photo)
    int8 = sdk.Predictor(path, backend="ort-cpu", pipeline=declared, precision="int8")
    difference = np.abs(fp32.astype(np.int16) - int8(photo))
    assert difference.max() <= 4, f"int8 is {difference.max()} grey levels off fp32"
    assert "QLinearConv" in {node.op_type for node in _loaded_model(int8).graph.node}


def test_the_saturation_probe_sees_what_the_cpu_computes_with():
    """ONNX Runtime adds uint8 x int8 products in pairs into 16 bits on x86 CPUs with AVX2 but no VNNI."""
    flags = _cpu_flags()
    if "avx2" not in flags:
        pytest.skip("no expectation for an x86 CPU without AVX2 (its kernels are not the pairwise ones)")
    assert _pairs_saturate() == (not {"avx512_vnni", "avx_vnni"} & flags)


def _cpu_flags() -> set[str]:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("reads the CPU's features from Linux's /proc/cpuinfo on x86")
    with open("/proc/cpuinfo") as fh:
        return {flag for line in fh if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def _pairs_saturate() -> bool:
    ort = pytest.importorskip("onnxruntime", reason="asks onnxruntime's own kernels")
    from deploy_sdk_backends.ort_int8 import pairs_saturate

    return pairs_saturate(ort)


def _weights(model, node):
    from onnx import numpy_helper

    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == node.input[3])


def _loaded_model(predictor):
    import onnx

    session = predictor.session
    if hasattr(session, "session_for"):  # one session per runtime factor (sdk.optimize): the last one run
        session = session.session_for(session.loaded_factors[-1])
    return onnx.load(str(session.model_path))


def test_a_precision_onnxruntime_lacks_is_unavailable_with_the_choices():
    with pytest.raises(BackendUnavailableError, match="'fp32' or 'int8'"):
        sdk.Predictor("srcnn3", backend="ort-cpu", precision="fp16")
