"""A multiplication by a constant -> a BatchNormalization that does the same multiplication.

ESRGAN's RRDB scales every residual branch: ``x5 * 0.2 + x`` inside a dense block (after a Conv,
which engines fold into the Conv's weights) and ``out * 0.2 + x`` around each RRDB (after an Add,
which they cannot). ONNX Runtime keeps its convolutions in the blocked NCHWc layout only across the
operators its layout pass knows - convolutions, pools, Add/Sum, Concat, activations and
BatchNormalization (as a depthwise 1x1 convolution, which even takes the following Add as its sum
input) - but not a Mul by a constant. So each RRDB's ``* 0.2`` sent the whole trunk back to plain
NCHW: 46 reorders in and 48 out on the 4-block RRDB, and its Concats in the slow layout.

``BatchNormalization(x, scale=c, B=0, mean=0, var=1, epsilon=0)`` computes ``(x - 0) / sqrt(1 + 0) * c
+ 0``: exactly ``x * c`` in floating point, for a scalar ``c`` or one value per channel. Rewritten
only then: a feature map (the output of a Conv, Add, Concat or activation: see FEATURE_OPS), float32,
4-D with a channel count shape inference knows, the constant a scalar or ``[C, 1, 1]`` /
``[1, C, 1, 1]``, and opset 9 or later (BatchNormalization without ``spatial``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .resize import Rewrite

# Where a feature map comes from. A Mul on anything else (attention's q * scale after a Transpose, an
# input normalisation) is left to the engines, which fold it into a MatMul or the first Conv.
FEATURE_OPS = {"Conv", "Add", "Sum", "Concat", "Relu", "LeakyRelu", "PRelu", "BatchNormalization"}


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


def scales_to_batchnorm(
    graph, constants: Mapping[str, np.ndarray], types: dict, opset: int, counter: list[int]
) -> list[Rewrite]:
    """Rewrite, in place, every Mul of a 4-D float32 tensor by a scalar or per-channel constant."""
    from onnx import helper, numpy_helper

    if opset < 9:
        return []
    fed = {value.name for value in graph.input}
    constants = {name: value for name, value in constants.items() if name not in fed}
    producers = {out: node.op_type for node in graph.node for out in node.output}
    report = []
    for index, node in enumerate(graph.node):
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        tensor, factor = node.input
        if tensor in constants:
            tensor, factor = factor, tensor
        if factor not in constants or tensor in constants or producers.get(tensor) not in FEATURE_OPS:
            continue
        dtype, shape = types.get(tensor, (None, ()))
        if dtype != "float32" or len(shape) != 4 or not isinstance(shape[1], int):
            continue
        scale = _per_channel(constants[factor], shape[1])
        if scale is None:
            continue
        label = node.name or f"Mul#{index}"
        counter[0] += 1
        prefix = f"sdk_opt{counter[0]}_scale_"
        zeros, ones = np.zeros_like(scale), np.ones_like(scale)
        graph.initializer.extend(
            numpy_helper.from_array(value, prefix + name)
            for name, value in (("scale", scale), ("zero", zeros), ("one", ones))
        )
        inputs = [tensor, prefix + "scale", prefix + "zero", prefix + "zero", prefix + "one"]
        batchnorm = helper.make_node(
            "BatchNormalization", inputs, list(node.output), epsilon=0.0, name=prefix + "batchnorm"
        )
        graph.node[index].CopyFrom(batchnorm)
        what = f"x {float(scale[0]):g}" if np.all(scale == scale[0]) else f"x one constant per channel ({shape[1]})"
        report.append(Rewrite(label, True, f"Mul {what} -> BatchNormalization (epsilon 0)"))
    return report
