"""Narrow convolutions split into a vertical and a horizontal one (sdk.optimize.narrow): same results,
and left alone where the split is not exactly the same computation or would not pay."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.optimize.narrow import BLOCK
from sdk.optimize.passes import optimise


def conv_model(cout, cin, kernel, pads=None, bias=True, seed=0, dtype=np.float32, relu=False, **attrs):
    rng = np.random.default_rng(seed)
    kh, kw = kernel
    inits = [numpy_helper.from_array(rng.standard_normal((cout, cin, kh, kw)).astype(dtype), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(dtype), "b"))
        inputs.append("b")
    if pads is not None:
        attrs["pads"] = pads
    nodes = [helper.make_node("Conv", inputs, ["c" if relu else "y"], name="conv", **attrs)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    channels = cin * attrs.get("group", 1)  # cin is per group, as in the weight's shape
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", elem, ["n", channels, "h", "w"])],
        [helper.make_tensor_value_info("y", elem, ["n", cout, "H", "W"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def run(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("cout", [1, 2, 3])
@pytest.mark.parametrize(
    "cin,kernel,pads",
    [
        (32, (5, 5), [2, 2, 2, 2]),  # SRCNN's last layer (1 output: the Y-channel SRCNN)
        (64, (9, 9), [4, 4, 4, 4]),
        (32, (3, 5), [1, 2, 1, 2]),  # not square
        (32, (5, 3), [0, 0, 0, 0]),  # no padding: the output shrinks
        (48, (4, 4), [3, 0, 1, 2]),  # even and lopsided
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_a_narrow_convolution_split_in_two_equals_the_original(cout, cin, kernel, pads, bias):
    check_split_equals(cout, cin, kernel, pads, bias)


def test_seven_outputs_split_into_four_blocks_equal_the_original():
    check_split_equals(7, 64, (9, 9), [4, 4, 4, 4], True)


def check_split_equals(cout, cin, kernel, pads, bias):
    model = conv_model(cout, cin, kernel, pads, bias=bias, relu=cout == 3)
    rewritten, report = optimise(model)
    assert [r.done for r in report] == [True]
    x = np.random.default_rng(1).uniform(-1, 1, (2, cin, 13, 11)).astype(np.float32)
    expected = run(model, x)
    got = run(rewritten, x)
    assert got.shape == expected.shape
    # only the order of the float additions differs
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_the_split_is_a_column_pass_into_whole_blocks_then_a_row_sum():
    rewritten, report = optimise(conv_model(3, 32, (5, 5), [2, 2, 2, 2]))
    vertical, horizontal = rewritten.graph.node
    weights = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    assert weights[vertical.input[1]].shape == (BLOCK, 32, 5, 1)  # 3 x 5 columns, padded to a block
    assert weights[horizontal.input[1]].shape == (3, BLOCK, 1, 5)
    assert set(np.unique(weights[horizontal.input[1]])) == {0.0, 1.0}
    assert horizontal.input[2] == "b" and horizontal.output[0] == "y"
    assert "Conv 5x5 32 -> 3" in report[0].what
    onnx.checker.check_model(rewritten)


@pytest.mark.parametrize(
    "why,model",
    [
        ("group 2", conv_model(4, 32, (5, 5), [2, 2, 2, 2], group=2)),
        ("strides or dilations", conv_model(3, 32, (5, 5), [2, 2, 2, 2], strides=[2, 2])),
        ("strides or dilations", conv_model(3, 32, (5, 5), [4, 4, 4, 4], dilations=[2, 2])),
        ("auto_pad", conv_model(3, 32, (5, 5), auto_pad="SAME_UPPER")),
        ("float32", conv_model(3, 32, (5, 5), [2, 2, 2, 2], dtype=np.float16)),
    ],
)
def test_what_is_not_the_plain_case_is_left_alone_and_said_why(why, model):
    rewritten, report = optimise(model)
    assert [r.done for r in report] == [False] and why in report[0].what
    assert rewritten.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize(
    "model",
    [
        conv_model(BLOCK, 32, (5, 5), [2, 2, 2, 2]),  # already fills its blocks
        conv_model(3, 32, (1, 1)),  # one column: nothing to split
        conv_model(9, 32, (3, 3), [1, 1, 1, 1]),  # ESPCN x3's last layer: 27 -> 32 channels would not pay
        conv_model(3, 3, (9, 9), [4, 4, 4, 4]),  # few inputs: the row sum would cost more than it saves
    ],
)
def test_convolutions_that_would_not_gain_are_not_touched(model):
    rewritten, report = optimise(model)
    assert report == [] and rewritten.SerializeToString() == model.SerializeToString()


def test_weights_that_are_not_constants_are_left_alone():
    model = conv_model(3, 32, (5, 5), [2, 2, 2, 2])
    weight = model.graph.initializer[0]
    model.graph.node.insert(0, helper.make_node("Identity", ["w0"], ["w"]))
    weight.name = "w0"
    model.graph.input.append(helper.make_tensor_value_info("w0", TensorProto.FLOAT, [3, 32, 5, 5]))
    model.graph.initializer.remove(weight)
    rewritten, report = optimise(model)
    assert report == [] and rewritten.SerializeToString() == model.SerializeToString()


def test_weights_a_caller_may_feed_are_left_alone():
    # IR 3 style: the initializer is also a graph input, so it is only a default value.
    model = conv_model(3, 32, (5, 5), [2, 2, 2, 2])
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 32, 5, 5]))
    rewritten, report = optimise(model)
    assert report == [] and rewritten.SerializeToString() == model.SerializeToString()
