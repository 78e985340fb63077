"""ort-cpu's opt-in precision="int8": statically quantised, calibrated on the package's own photos."""

import numpy as np
import pytest

import sdk
from sdk.errors import BackendUnavailableError


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
    ops = {node.op_type for node in _loaded_model(int8).graph.node}
    assert "QLinearConv" in ops
    assert "QLinearConv" not in {node.op_type for node in _loaded_model(fp32).graph.node}


def _loaded_model(predictor):
    import onnx

    session = predictor.session  # one session per factor (sdk.optimize): the one scale 3 ran on
    return onnx.load(str(session.session_for(session.loaded_factors[-1]).model_path))


def test_a_precision_onnxruntime_lacks_is_unavailable_with_the_choices():
    with pytest.raises(BackendUnavailableError, match="'fp32' or 'int8'"):
        sdk.Predictor("srcnn3", backend="ort-cpu", precision="fp16")
