"""A multiplication or addition by a constant -> a BatchNormalization that does exactly that.

ESRGAN's RRDB scales every residual branch: ``x5 * 0.2 + x`` inside a dense block (after a Conv,
which engines fold into the Conv's weights) and ``out * 0.2 + x`` around each RRDB (after an Add,
which they cannot). SPAN shifts each block's attention: ``sigmoid(out3) - 0.5``. ONNX Runtime keeps
its convolutions in the blocked NCHWc layout only across the operators its layout pass knows -
convolutions, pools, Add/Sum, Concat, activations and BatchNormalization (as a depthwise 1x1
convolution, which even takes the following Add as its sum input) - but not a Mul, Add or Sub with a
constant. So each RRDB's ``* 0.2`` sent the whole trunk back to plain NCHW (46 reorders in and 48 out
on the 4-block RRDB, and its Concats in the slow layout), and each SPAN block's ``- 0.5`` did the
same (23 reorders on the 6-block SPAN; 1 after).

``BatchNormalization(x, scale=s, B=b, mean=0, var=1, epsilon=0)`` computes ``(x - 0) / sqrt(1 + 0) * s
+ b``: exactly ``x * c`` (s=c, b=0), ``x + c`` (s=1, b=c), ``x - c`` (s=1, b=-c) or ``c - x`` (s=-1,
b=c) in floating point, for a scalar ``c`` or one value per channel. Rewritten only then: a feature
map (the output of a Conv, Add, Concat or activation: see FEATURE_OPS), float32, 4-D with a channel
count shape inference knows, the constant a scalar or ``[C, 1, 1]`` / ``[1, C, 1, 1]``, and opset 9
or later (BatchNormalization without ``spatial``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .resize import Rewrite

# Where a feature map comes from. A Mul on anything else (attention's q * scale after a Transpose, an
# input normalisation) is left to the engines, which fold it into a MatMul or the first Conv.
FEATURE_OPS = {"Conv", "Add", "Sum", "Concat", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "BatchNormalization"}


def _per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
    """The constant as one float32 per channel, or None when it is not a scalar or per-channel."""
    if value.dtype != np.float32:
        return None
    if value.size == 1:
        return np.full(channels, value.reshape(-1)[0], np.float32)
    shape = tuple(value.shape)
    if shape in ((channels, 1, 1), (1, channels, 1, 1)):
        return value.reshape(channels).astype(np.float32)
    return None


# How each form becomes BatchNormalization's scale and bias (``c`` the constant per channel), and how
# the report shows it.
_FORMS = {
    "x * c": (lambda c: (c, np.zeros_like(c)), "x {}"),
    "x + c": (lambda c: (np.ones_like(c), c), "+ {}"),
    "x - c": (lambda c: (np.ones_like(c), -c), "- {}"),
    "c - x": (lambda c: (-np.ones_like(c), c), "{} - x"),
}


def _form(node, constants) -> tuple[str, str, str] | None:
    """(the feature map, the constant, its _FORMS key) for a binary Mul/Add/Sub with one constant."""
    if node.op_type not in ("Mul", "Add", "Sub") or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
        return None
    tensor, constant = node.input
    if (tensor in constants) == (constant in constants):
        return None
    first = tensor in constants  # c * x, c + x, c - x
    if first:
        tensor, constant = constant, tensor
    sign = {"Mul": "*", "Add": "+", "Sub": "-"}[node.op_type]
    return tensor, constant, "c - x" if first and sign == "-" else f"x {sign} c"


def scales_to_batchnorm(
    graph, constants: Mapping[str, np.ndarray], types: dict, opset: int, counter: list[int]
) -> list[Rewrite]:
    """Rewrite, in place, every Mul, Add or Sub of a 4-D float32 feature map and a scalar or
    per-channel constant."""
    from onnx import helper, numpy_helper

    if opset < 9:
        return []
    fed = {value.name for value in graph.input}
    constants = {name: value for name, value in constants.items() if name not in fed}
    producers = {out: node.op_type for node in graph.node for out in node.output}
    report = []
    for index, node in enumerate(graph.node):
        found = _form(node, constants)
        if found is None:
            continue
        tensor, factor, form = found
        if producers.get(tensor) not in FEATURE_OPS:
            continue
        dtype, shape = types.get(tensor, (None, ()))
        if dtype != "float32" or len(shape) != 4 or not isinstance(shape[1], int):
            continue
        value = _per_channel(constants[factor], shape[1])
        if value is None:
            continue
        terms, shown = _FORMS[form]
        scale, bias = terms(value)
        ones, zeros = np.ones_like(value), np.zeros_like(value)
        op, label = node.op_type, node.name or f"{node.op_type}#{index}"  # read now: the node is replaced below
        counter[0] += 1
        prefix = f"sdk_opt{counter[0]}_scale_"
        graph.initializer.extend(
            numpy_helper.from_array(array, prefix + name)
            for name, array in (("scale", scale), ("bias", bias), ("zero", zeros), ("one", ones))
        )
        inputs = [tensor, prefix + "scale", prefix + "bias", prefix + "zero", prefix + "one"]
        batchnorm = helper.make_node(
            "BatchNormalization", inputs, list(node.output), epsilon=0.0, name=prefix + "batchnorm"
        )
        graph.node[index].CopyFrom(batchnorm)
        constant = f"{float(value[0]):g}" if np.all(value == value[0]) else f"one constant per channel ({shape[1]})"
        report.append(Rewrite(label, True, f"{op} {shown.format(constant)} -> BatchNormalization (epsilon 0)"))
    return report
