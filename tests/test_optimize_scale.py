"""Multiplications and additions by a constant become BatchNormalization (sdk.optimize.scale): exactly
the same numbers, ONNX Runtime keeps the RRDB trunk and SPAN's blocks in its blocked layout, and what
does not fit is left alone."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.optimize.passes import optimise

PADS = [1, 1, 1, 1]


def three_conv_model(name, nodes, constant, value, channels=16, opset=17, seed=0) -> onnx.ModelProto:
    """``input`` -> conv w0 -> ``x``, then ``nodes`` (convs w1, w2 of channels -> channels, and w3 to
    the 3-channel ``output``), with the float32 ``constant`` named ``name`` in the graph."""
    rng = np.random.default_rng(seed)

    def weight(label, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), label)

    inits = [
        weight("w0", channels, 3, 3, 3),
        weight("w1", channels, channels, 3, 3),
        weight("w2", channels, channels, 3, 3),
        weight("w3", 3, channels, 3, 3),
        numpy_helper.from_array(np.asarray(value, np.float32), constant),
    ]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w0"], ["x"], pads=PADS), *nodes],
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def residual_model(factor: np.ndarray, channels: int = 16, opset: int = 17, seed: int = 0) -> onnx.ModelProto:
    """An RRDB in miniature: conv -> LeakyRelu -> conv, the sum with the input scaled by ``factor``
    (``out * 0.2 + x``), then another conv on the result."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=PADS),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.2),
        helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=PADS),
        helper.make_node("Add", ["c2", "x"], ["inner"]),
        helper.make_node("Mul", ["inner", "factor"], ["scaled"], name="rrdb_scale"),
        helper.make_node("Add", ["scaled", "x"], ["trunk"]),
        helper.make_node("Conv", ["trunk", "w3"], ["output"], pads=PADS),
    ]
    return three_conv_model("rrdb-like", nodes, "factor", factor, channels, opset, seed)


def run(proto, x, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, save_to=None):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    if save_to:
        options.optimized_model_filepath = str(save_to)
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize(
    "factor", [np.float32(0.2), np.array([0.2], np.float32), np.linspace(-1, 2, 16).reshape(16, 1, 1)]
)
def test_a_scale_becomes_a_batchnorm_with_exactly_the_same_results(factor):
    model = residual_model(factor)
    rewritten, report = optimise(model)
    assert [r.node for r in report if r.done] == ["rrdb_scale"]
    assert [n.op_type for n in rewritten.graph.node].count("BatchNormalization") == 1
    assert "Mul" not in [n.op_type for n in rewritten.graph.node]
    assert_same_numbers(model, rewritten)


def assert_same_numbers(model, rewritten) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 24)).astype(np.float32)
    # Without ORT's own rewrites the two graphs compute the same float operations: equal bit for bit.
    basic = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert np.array_equal(run(model, x, basic), run(rewritten, x, basic))
    # With them (the blocked layout, fused convolutions) only float rounding may differ.
    np.testing.assert_allclose(run(rewritten, x), run(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "why,factor,opset",
    [
        ("a factor per row is not per channel", np.ones((1, 1, 20, 1), np.float32), 17),
        ("opset 8's BatchNormalization has 'spatial'", np.float32(0.2), 8),
    ],
)
def test_what_is_not_a_plain_scale_is_left_alone(why, factor, opset):
    _, report = optimise(residual_model(factor, opset=opset))
    assert not [r for r in report if r.node == "rrdb_scale"], why


def test_a_scale_outside_the_feature_maps_is_left_alone():
    """Attention's ``q * scale`` (after a Transpose) is folded into its MatMul by the engines: a
    BatchNormalization there would only undo that."""
    model = residual_model(np.float32(0.2))
    model.graph.node.insert(5, helper.make_node("Transpose", ["inner"], ["swapped"], perm=[0, 1, 3, 2]))
    model.graph.node[6].input[0] = "swapped"
    model.graph.node.insert(7, helper.make_node("Transpose", ["scaled"], ["scaled_back"], perm=[0, 1, 3, 2]))
    model.graph.node[8].input[0] = "scaled_back"
    _, report = optimise(model)
    assert not [r for r in report if r.node == "rrdb_scale"]


def test_the_bundled_models_have_nothing_to_scale():
    from sdk.model import Model
    from sdk.optimize.graph import load_with_weights

    for name in ("srcnn", "srcnn3", "espcn"):
        _, report = optimise(load_with_weights(Model(name).path))
        assert not [r for r in report if "BatchNormalization" in r.what], name


def span_block_model(shift: np.ndarray, order: str) -> onnx.ModelProto:
    """A SPAN block in miniature: conv -> SiLU -> conv, its attention ``sigmoid(out) - shift`` (or
    ``shift - sigmoid(out)``, or ``sigmoid(out) + shift``) times ``out + x``, then another conv."""
    op, inputs = {
        "s - c": ("Sub", ["sig", "shift"]),
        "c - s": ("Sub", ["shift", "sig"]),
        "s + c": ("Add", ["sig", "shift"]),
    }[order]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=PADS),
        helper.make_node("Sigmoid", ["c1"], ["g1"]),
        helper.make_node("Mul", ["c1", "g1"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=PADS),
        helper.make_node("Sigmoid", ["c2"], ["sig"]),
        helper.make_node(op, inputs, ["att"], name="attention_shift"),
        helper.make_node("Add", ["c2", "x"], ["res"]),
        helper.make_node("Mul", ["res", "att"], ["block"]),
        helper.make_node("Conv", ["block", "w3"], ["output"], pads=PADS),
    ]
    return three_conv_model("span-like", nodes, "shift", shift)


@pytest.mark.parametrize("order", ["s - c", "c - s", "s + c"])
@pytest.mark.parametrize("shift", [np.float32(0.5), np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16, 1, 1)])
def test_a_constant_shift_becomes_a_batchnorm_with_exactly_the_same_results(order, shift, tmp_path):
    model = span_block_model(shift, order)
    rewritten, report = optimise(model)
    assert [r.node for r in report if r.done] == ["attention_shift"]
    assert next(r.what for r in report if r.done).startswith(("Sub ", "Add "))
    assert [n.op_type for n in rewritten.graph.node].count("BatchNormalization") == 1
    assert_same_numbers(model, rewritten)


@pytest.mark.parametrize(
    "model",
    [residual_model(np.float32(0.2)), span_block_model(np.float32(0.5), "s - c")],
    ids=["rrdb-trunk", "span-block"],
)
def test_onnx_runtime_then_keeps_the_net_in_its_blocked_layout(tmp_path, model):
    rewritten, _ = optimise(model)
    x = np.zeros((1, 3, 16, 16), np.float32)

    def reorders(proto, name):
        run(proto, x, save_to=tmp_path / name)
        return sum(n.op_type in ("ReorderInput", "ReorderOutput") for n in onnx.load(str(tmp_path / name)).graph.node)

    # Before: out of the blocked layout for the Mul (or Sub) and back in for the next conv; after:
    # only the final output leaves it.
    assert reorders(model, "before.onnx") > reorders(rewritten, "after.onnx") == 1
