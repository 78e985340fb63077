"""The TensorRT backend's pure-ONNX rewrites, checked on ONNX Runtime CPU (no TensorRT needed):
the runtime factor baked in as a constant, and the fp16 graph with fp32 inputs and outputs."""

from __future__ import annotations

import graphs
import numpy as np
import onnx
import pytest

from deploy_sdk_backends.tensorrt import graph
from deploy_sdk_backends.tensorrt.session import prepare_onnx, specialisation_of
from sdk.errors import InputError, ModelError
from sdk.model import Model

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def srcnn3() -> Model:
    return Model("srcnn3")  # the bundled model: the graph our users hand to TensorRT


def _run(model_or_proto, feeds: dict) -> np.ndarray:
    data = model_or_proto.SerializeToString() if isinstance(model_or_proto, onnx.ModelProto) else str(model_or_proto)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def _tensor(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _to_uint8(tensor: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(tensor), 0, 255).astype(np.uint8)


def test_the_factor_input_is_found_as_a_shape_input(srcnn3):
    assert graph.shape_inputs(srcnn3.proto) == ["factor"]


def test_fixed_scale_and_y_models_have_no_shape_inputs():
    assert graph.shape_inputs(graphs.fixed_scale_model(3)) == []
    assert graph.shape_inputs(graphs.y_channel_model(3)) == []


def test_a_factor_reaching_resize_through_other_nodes_is_found():
    model = graphs.runtime_scale_model()
    resize = model.graph.node[0]
    model.graph.node.insert(0, onnx.helper.make_node("Identity", ["factor"], ["factor_copy"]))
    resize.input[2] = "factor_copy"
    assert graph.shape_inputs(model) == ["factor"]


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_specialised_graph_matches_the_original_at_that_factor(srcnn3, photo, factor):
    scales = np.array([1, 1, factor, factor], np.float32)
    feeds = {"input": _tensor(photo), "factor": scales}
    original = _run(srcnn3.path, feeds)
    specialised = graph.specialise(graph.load_with_weights(srcnn3.path), {"factor": scales})
    assert [i.name for i in specialised.graph.input] == ["input"]
    rewritten = _run(specialised, feeds)
    assert rewritten.shape == original.shape == (1, 3, photo.shape[0] * factor, photo.shape[1] * factor)
    assert np.abs(rewritten - original).max() <= 1e-4


def test_the_file_tensorrt_would_parse_is_the_specialised_graph(srcnn3, photo, tmp_path):
    feeds = {"input": _tensor(photo), "factor": np.array([1, 1, 3, 3], np.float32)}
    specialisation = specialisation_of(feeds, ["factor"])
    assert specialisation == (("factor", (4,), (1.0, 1.0, 3.0, 3.0)),)
    path, nodes = prepare_onnx(srcnn3, specialisation, fp16=False, work=tmp_path)
    assert path.parent == tmp_path and "Resize" in [op for _, op in nodes]
    assert np.abs(_run(path, feeds) - _run(srcnn3.path, feeds)).max() <= 1e-4


def test_an_unchanged_model_is_parsed_from_its_own_file(srcnn3, tmp_path):
    fixed = Model(graphs.save(graphs.fixed_scale_model(3), tmp_path / "fixed.onnx"))
    path, nodes = prepare_onnx(fixed, (), fp16=False, work=tmp_path / "unused")
    assert path == fixed.path and len(nodes) == len(fixed.proto.graph.node)


def test_specialise_rejects_a_wrong_shape_an_unknown_input_and_non_finite_values(srcnn3):
    proto = srcnn3.proto
    with pytest.raises(InputError, match="shape"):
        graph.specialise(proto, {"factor": np.ones((2, 2), np.float32)})
    with pytest.raises(ModelError, match="inputs are"):
        graph.specialise(proto, {"scale": np.ones(4, np.float32)})
    with pytest.raises(InputError, match="finite"):
        graph.specialise(proto, {"factor": np.array([1, 1, np.nan, 3], np.float32)})


def test_specialise_leaves_the_original_untouched(srcnn3):
    before = srcnn3.proto.SerializeToString()
    graph.specialise(srcnn3.proto, {"factor": np.array([1, 1, 2, 2], np.float32)})
    assert srcnn3.proto.SerializeToString() == before


def test_fp16_graph_keeps_fp32_io_and_float32_resize_scales(srcnn3):
    specialised = graph.specialise(graph.load_with_weights(srcnn3.path), {"factor": np.array([1, 1, 3, 3], np.float32)})
    half = graph.to_fp16(specialised)
    float32 = onnx.TensorProto.FLOAT
    assert all(v.type.tensor_type.elem_type == float32 for v in (*half.graph.input, *half.graph.output))
    initializers = {t.name: t.data_type for t in half.graph.initializer}
    resize = next(n for n in half.graph.node if n.op_type == "Resize")
    assert initializers[resize.input[2]] == float32  # scales must stay float32
    conv_weights = [initializers[n.input[1]] for n in half.graph.node if n.op_type == "Conv"]
    assert conv_weights and all(t == onnx.TensorProto.FLOAT16 for t in conv_weights)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_fp16_graph_is_within_40_db_of_fp32_on_a_real_photo(srcnn3, factor, tmp_path):
    from PIL import Image
    from skimage import data

    image = np.asarray(Image.fromarray(data.astronaut()).resize((96, 96), Image.Resampling.BICUBIC))
    feeds = {"input": _tensor(image), "factor": np.array([1, 1, factor, factor], np.float32)}
    specialisation = specialisation_of(feeds, ["factor"])
    path32, _ = prepare_onnx(srcnn3, specialisation, fp16=False, work=tmp_path)
    (tmp_path / "half").mkdir()
    path16, _ = prepare_onnx(srcnn3, specialisation, fp16=True, work=tmp_path / "half")
    reference = _to_uint8(_run(path32, feeds))
    half = _run(path16, feeds)
    assert half.dtype == np.float32
    assert _psnr(_to_uint8(half), reference) >= 40.0


def test_saving_keeps_small_models_in_one_file(srcnn3, tmp_path):
    path = graph.save(srcnn3.proto, tmp_path / "copy.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.onnx"]
    assert onnx.load(str(path)).graph.node[0].op_type == srcnn3.proto.graph.node[0].op_type
