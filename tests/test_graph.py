"""sdk.graph: what a model's graph says, read in one place."""

import graphs
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.graph import tensors
from sdk.graph.inputs import shape_inputs
from sdk.graph.reach import receptive_radius
from sdk.graph.scale import fixed_scale_of
from sdk.model import Model


def test_element_sizes_come_from_the_type_and_unknown_ones_count_high():
    assert tensors.element_size(TensorProto.FLOAT) == 4
    assert tensors.element_size(TensorProto.FLOAT16) == 2
    assert tensors.element_size(TensorProto.UINT8) == 1
    assert tensors.element_size(TensorProto.FLOAT8E4M3FN) == 1
    # UNDEFINED, and a type newer than this onnx: counted as float32, erring high on memory.
    assert tensors.element_size(TensorProto.UNDEFINED) == tensors.UNKNOWN_ELEMENT_BYTES == 4
    assert tensors.element_size(10_000) == 4
    assert tensors.nbytes([2, 3], TensorProto.FLOAT16) == 12
    assert tensors.count([2, -1]) == -1


def test_constants_gather_initializers_and_constant_nodes_and_read_values_only_when_asked(tmp_path):
    model = graphs.fixed_scale_model(3)
    model.graph.node.insert(
        0, helper.make_node("Constant", [], ["seven"], value=numpy_helper.from_array(np.array([7.0], np.float32)))
    )
    constants = tensors.Constants(model.graph)
    assert "scales" in constants and "seven" in constants and "input" not in constants
    assert constants["scales"].tolist() == [1, 1, 3, 3] and constants.get("seven").tolist() == [7.0]
    assert constants._arrays.keys() == {"scales", "seven"}  # the weights were never converted
    assert constants.dims("c1_w") == (8, 3, 3, 3)
    assert len(constants) == len(list(constants)) == len(model.graph.initializer) + 1
    # A weight kept in an external file that was not loaded: its dims are known, its value absent.
    path = tmp_path / "external.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=64)
    unloaded = tensors.Constants(onnx.load(str(path), load_external_data=False).graph)
    assert unloaded.dims("c1_w") == (8, 3, 3, 3) and "c1_w" not in unloaded and unloaded.get("c1_w") is None
    assert unloaded["scales"].tolist() == [1, 1, 3, 3]  # small ones stay inside the file


def test_tensor_info_and_value_types():
    model = graphs.runtime_scale_model()
    info = tensors.tensor_info(model.graph.input[0])
    assert info == tensors.TensorInfo("input", ("n", 3, "h", "w"), np.dtype("float32")) and not info.static_shape
    types = tensors.value_types(model)
    assert types["input"] == ("float32", (None, 3, None, None)) and types["factor"] == ("float32", (4,))
    assert tensors.opset(model) == 11


def test_the_graph_says_which_inputs_set_shapes_and_what_fixed_scale_it_has(tmp_path):
    assert shape_inputs(graphs.runtime_scale_model()) == ["factor"]
    assert shape_inputs(graphs.fixed_scale_model(3)) == []
    fixed = Model(graphs.save(graphs.fixed_scale_model(2), tmp_path / "x2.onnx"))
    assert fixed_scale_of(fixed) == 2
    espcn = Model(graphs.save(graphs.y_channel_model(3), tmp_path / "y3.onnx"))
    assert fixed_scale_of(espcn) == 3


def test_the_receptive_field_of_the_bundled_models():
    from sdk.model import bundled_path

    srcnn3 = onnx.load(str(bundled_path("srcnn3")))
    # cubic Resize reaches 2 input pixels; then 9x9 and 5x5 convolutions at the output resolution.
    assert receptive_radius(srcnn3, "input", 3) == pytest.approx(2 + 4 / 3 + 2 / 3)
    assert receptive_radius(srcnn3, "input", 1) == pytest.approx(2 + 4 + 2)
    espcn = onnx.load(str(bundled_path("espcn")))
    assert receptive_radius(espcn, "input", 3) == pytest.approx(2 + 1 + 1 + 1)


def _chain(*nodes) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, [1, 3, None, None])],
    )
    return helper.make_model(graph)


def test_the_receptive_field_follows_dilation_stride_and_resolution():
    conv = helper.make_node("Conv", ["input", "w1"], ["a"], kernel_shape=[3, 3], dilations=[2, 2], strides=[2, 2])
    shuffle = helper.make_node("DepthToSpace", ["a"], ["b"], blocksize=2)
    shape = helper.make_node("Shape", ["b"], ["s"])  # describes a shape, carries no pixels
    last = helper.make_node("Conv", ["b", "w2"], ["out"], kernel_shape=[5, 5])
    # 3x3 dilated by 2 reaches 2 input pixels and halves the resolution; the pixel shuffle restores it,
    # so the 5x5 then reaches 2 more input pixels.
    assert receptive_radius(_chain(conv, shuffle, shape, last), "input", 2) == pytest.approx(4)
    pooled = helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[3, 3], strides=[2, 2])
    after = helper.make_node("Conv", ["p", "w"], ["out"], kernel_shape=[3, 3])
    assert receptive_radius(_chain(pooled, after), "input", 2) == pytest.approx(1 + 1 * 2)  # at half resolution
    # A layer whose reach is not local (attention's softmax over a reshape) cannot be bounded.
    attention = graphs.runtime_scale_model()
    attention.graph.node.insert(1, helper.make_node("Softmax", ["up"], ["sm"]))
    attention.graph.node[2].input[0] = "sm"
    assert receptive_radius(attention, "input", 3) is None


def test_the_backend_contract_still_offers_tensor_info():
    import sdk
    from sdk.backend import TensorInfo

    assert TensorInfo is sdk.TensorInfo is tensors.TensorInfo


@pytest.mark.parametrize("elem_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_the_hostile_file_check_counts_each_element_by_its_type(tmp_path, elem_type):
    """A declared weight is refused by its real bytes: elements x the type's size, not x 1."""
    import psutil

    from sdk.errors import ModelError

    elements = psutil.virtual_memory().total // tensors.element_size(elem_type) + 1
    model = graphs.fixed_scale_model(3)
    weight = next(t for t in model.graph.initializer if t.name == "c1_w")
    weight.data_type = elem_type
    del weight.dims[:]
    weight.dims.extend([elements])
    path = tmp_path / "huge.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="more than this machine's memory"):
        Model(path)
