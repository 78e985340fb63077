"""Hostile model files are refused by the SDK itself, before any engine reads them."""

import os

import graphs
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import sdk
from sdk.model import Model


def _external(tmp_path, location: str):
    """A model whose conv weight claims to live in ``location``."""
    model = graphs.fixed_scale_model(3)
    weight = next(t for t in model.graph.initializer if t.name == "c1_w")
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(8 * 3 * 9 * 4)}.items():
        weight.external_data.add(key=key, value=value)
    path = tmp_path / "models" / "hostile.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin", "sub/../../secret.bin", "link.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(os.urandom(4096))
    path = _external(tmp_path, location)
    (path.parent / "sub").mkdir()
    (path.parent / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(sdk.ModelError, match="outside the model's folder"):
        Model(path)
    with pytest.raises(sdk.ModelError, match="outside the model's folder"):
        sdk.Predictor(path, backend="ort-cpu")


def test_external_data_next_to_the_model_loads(tmp_path):
    path = _external(tmp_path, "weights.bin")
    rng = np.random.default_rng(0)
    (path.parent / "weights.bin").write_bytes(rng.standard_normal(8 * 3 * 9).astype(np.float32).tobytes())
    predictor = sdk.Predictor(path, backend="ort-cpu")
    assert predictor(np.zeros((4, 4, 3), np.uint8)).shape == (12, 12, 3)
    (path.parent / "weights.bin").write_bytes(b"short")
    with pytest.raises(sdk.ModelError, match="past the end"):
        Model(path)


def test_absurd_static_shape_is_refused(tmp_path):
    model = graphs.fixed_scale_model(3)
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 10**6, 10**6]))
    path = tmp_path / "huge.onnx"
    onnx.save(model, path)
    with pytest.raises(sdk.ModelError, match="more than this machine's memory"):
        Model(path)


def test_absurd_declared_weight_is_refused(tmp_path):
    model = graphs.fixed_scale_model(3)
    weight = next(t for t in model.graph.initializer if t.name == "c1_w")
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    del weight.dims[:]
    weight.dims.extend([10**6, 10**6, 3, 3])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="w.bin")
    path = tmp_path / "w.onnx"
    path.write_bytes(model.SerializeToString())
    (tmp_path / "w.bin").write_bytes(b"0" * 16)
    with pytest.raises(sdk.ModelError, match="more than this machine's memory"):
        Model(path)


def test_a_model_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = graphs.save(graphs.fixed_scale_model(3), tmp_path / "m.onnx")
    import sdk.memory

    monkeypatch.setattr(sdk.memory, "total", lambda: 1000)  # a machine with 1000 bytes of memory
    with pytest.raises(sdk.ModelError, match="more than this machine's memory"):
        Model(path)


def test_unknown_element_type_is_a_model_error(tmp_path):
    model = graphs.fixed_scale_model(3)
    model.graph.input[0].type.tensor_type.elem_type = 999
    path = tmp_path / "odd.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(sdk.ModelError):
        Model(path)
