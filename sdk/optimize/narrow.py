"""A convolution with few output channels -> a vertical convolution into more channels + a horizontal sum.

CPU engines compute a convolution in blocks of output channels: ONNX Runtime's NCHWc layout and
oneDNN (OpenVINO) both use blocks of 16 floats on AVX-512 (8 on AVX2). A convolution with 3 outputs,
such as the last layer of every SRCNN (5x5, 32 -> 3), then pays for 16: on srcnn3 256² x3 ONNX Runtime
spent 83 of 181 ms in that layer, which holds 12% of the model's FLOPs.

Split the kh x kw kernel into its columns. With ``mid[c * kw + j] = sum_i w[c, i, :, j] (*) x[i]``,
each a kh x 1 convolution, the output is ``y[c] = b[c] + sum_j mid[c * kw + j]`` shifted by ``j``
columns, a 1 x kw convolution whose weights are ones and zeros. The first holds almost all of the
work, now with ``Cout * kw`` outputs that fill whole blocks; the second is cheap. Zero padding splits
the same way (rows on the first, columns on the second) because ``mid`` carries no bias, so a padded
column of ``mid`` is exactly what the padded input columns contributed: nothing. Only the order of
the float additions changes.

Rewritten only where a blocked engine does clearly less work (see :func:`_blocked_cost`), and only
for the plain case: float32, 2-D, group 1, stride 1, dilation 1, explicit pads, constant weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .resize import Rewrite

# The widest SIMD block of output channels an engine uses here (AVX-512: 16 float32).
BLOCK = 16
# Rewrite only when the split costs at most this fraction of the original's blocked work.
_WORTH_IT = 0.6


def _blocked(channels: int) -> int:
    return -(-channels // BLOCK) * BLOCK


def _blocked_cost(cout: int, cin: int, kh: int, kw: int) -> tuple[int, int]:
    """Multiply-adds per output pixel (original, split), counting output channels in whole blocks."""
    mid = _blocked(cout * kw)
    return cin * kh * kw * _blocked(cout), cin * kh * mid + mid * kw * _blocked(cout)


def _pays(cout: int, cin: int, kh: int, kw: int) -> bool:
    original, split = _blocked_cost(cout, cin, kh, kw)
    return kw > 1 and split <= _WORTH_IT * original


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _why_not(node, weight: np.ndarray | None, bias_ok: bool) -> str | None:
    """Why this Conv is not rewritten, or None when it can be."""
    attrs = _attributes(node)
    if weight is None:
        return "its weights are not a constant"
    if weight.dtype != np.float32 or weight.ndim != 4:
        return f"only 2-D float32 convolutions are split (weights {weight.dtype} {list(weight.shape)})"
    if not bias_ok:
        return "its bias is not a constant"
    if attrs.get("group", 1) != 1:
        return f"group {attrs['group']}"
    if any(v != 1 for v in attrs.get("strides", [1, 1])) or any(v != 1 for v in attrs.get("dilations", [1, 1])):
        return "strides or dilations other than 1"
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) not in ("NOTSET", "VALID"):
        return f"auto_pad {auto_pad!r} (only explicit pads are split)"
    return None


def split_narrow_convs(graph, constants: Mapping[str, np.ndarray], counter: list[int]) -> list[Rewrite]:
    """Rewrite every Conv with few output channels in ``graph`` (in place); report the narrow ones."""
    from onnx import helper, numpy_helper

    report = []
    # An initializer that is also a graph input is only a default: a caller may feed other weights.
    fed = {value.name for value in graph.input}
    constants = {name: value for name, value in constants.items() if name not in fed}
    index = 0
    while index < len(graph.node):
        node = graph.node[index]
        index += 1
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            continue
        weight = constants.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None or weight.ndim != 4 or not _pays(*weight.shape):
            continue  # wide ones fill their blocks already, one column has nothing to split: nothing to say
        bias_name = node.input[2] if len(node.input) > 2 else ""
        label = node.name or f"Conv#{index - 1}"
        why = _why_not(node, weight, not bias_name or bias_name in constants)
        if why is not None:
            report.append(Rewrite(label, False, f"left alone: {why}"))
            continue
        cout, cin, kh, kw = weight.shape
        pads = list(_attributes(node).get("pads", [0, 0, 0, 0]))  # [top, left, bottom, right]
        counter[0] += 1
        prefix = f"sdk_opt{counter[0]}_narrow_"
        mid = _blocked(cout * kw)  # zero channels up to a whole block, so the second conv reads blocks
        columns = np.zeros((mid, cin, kh, 1), np.float32)
        shifts = np.zeros((cout, mid, 1, kw), np.float32)
        for c in range(cout):
            for j in range(kw):
                columns[c * kw + j, :, :, 0] = weight[c, :, :, j]
                shifts[c, c * kw + j, 0, j] = 1.0
        graph.initializer.extend(
            [numpy_helper.from_array(columns, prefix + "columns"), numpy_helper.from_array(shifts, prefix + "shifts")]
        )
        vertical = helper.make_node(
            "Conv",
            [node.input[0], prefix + "columns"],
            [prefix + "mid"],
            name=prefix + "vertical",
            kernel_shape=[kh, 1],
            pads=[pads[0], 0, pads[2], 0],
        )
        horizontal = helper.make_node(
            "Conv",
            [prefix + "mid", prefix + "shifts", *([bias_name] if bias_name else [])],
            list(node.output),
            name=prefix + "horizontal",
            kernel_shape=[1, kw],
            pads=[0, pads[1], 0, pads[3]],
        )
        position = index - 1
        del graph.node[position]
        graph.node.insert(position, horizontal)
        graph.node.insert(position, vertical)
        index += 1
        original, split = _blocked_cost(cout, cin, kh, kw)
        report.append(
            Rewrite(
                label,
                True,
                f"Conv {kh}x{kw} {cin} -> {cout} -> Conv {kh}x1 {cin} -> {mid} + Conv 1x{kw} "
                f"{mid} -> {cout} ({split} vs {original} blocked multiply-adds per pixel)",
            )
        )
    return report
