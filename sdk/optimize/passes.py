"""The optimisation pass over a whole graph: find what can be rewritten, rewrite it, tidy up.

:func:`optimise` takes a model whose runtime factor is already a constant (see
:func:`sdk.optimize.graph.specialise`) and returns a rewritten copy plus a record of what it did to
each Resize and each narrow convolution, and why it left any alone. It never changes what the model
computes beyond the order of float additions: each Resize rewrite is checked against ONNX's reference
implementation before it is made (``resize.py``); a narrow convolution is split into two whose sum is
the original's, term for term (``narrow.py``); a Mul, Add or Sub with a constant becomes a
BatchNormalization that multiplies or adds exactly that constant (``scale.py``).
"""

from __future__ import annotations

import numpy as np

from ..graph.tensors import Constants, value_types
from ..graph.tensors import opset as opset_of
from .narrow import split_narrow_convs
from .resize import Rewrite, cached_taps, describe, kernel_2d
from .scale import scales_to_batchnorm

# Bump whenever a rewrite changes: it is part of the on-disk cache key, so old results are not reused.
PASS_VERSION = 6
_FLOATS = {"float32": np.float32, "float16": np.float16, "float64": np.float64}


def _scales_of(node, opset: int, constants) -> np.ndarray | None:
    from onnx import helper

    if node.op_type == "Upsample" and opset < 9:
        attr = next((a for a in node.attribute if a.name == "scales"), None)
        return np.asarray(helper.get_attribute_value(attr), dtype=np.float64) if attr else None
    slot = 1 if node.op_type == "Upsample" or opset < 11 else 2
    name = node.input[slot] if len(node.input) > slot else ""
    value = constants.get(name) if name else None
    return None if value is None or value.size == 0 else np.asarray(value, dtype=np.float64).ravel()


def _integer_factor(scales: np.ndarray) -> int | None:
    if scales.shape != (4,) or scales[0] != 1 or scales[1] != 1 or scales[2] != scales[3]:
        return None
    factor = scales[2]
    return int(factor) if factor >= 1 and float(factor).is_integer() else None


def _rewrite_one(graph, index: int, node, opset: int, constants, types, counter: list[int]) -> Rewrite:
    from onnx import helper, numpy_helper

    label = node.name or f"{node.op_type}#{index}"
    kind = describe(node)  # read now: the node is replaced below
    if opset < 11:
        return Rewrite(
            label, False, f"left alone: opset {opset} has no edge Pad input form or CRD DepthToSpace (needs 11)"
        )
    attrs = {a.name for a in node.attribute}
    if "axes" in attrs:
        return Rewrite(label, False, "left alone: Resize with 'axes' is not rewritten")
    scales = _scales_of(node, opset, constants)
    if scales is None:
        return Rewrite(label, False, "left alone: its scales are not a constant (sizes, or computed at run time)")
    factor = _integer_factor(scales)
    if factor is None:
        return Rewrite(label, False, f"left alone: scales {scales.tolist()} are not [1, 1, s, s] with a whole s")
    dtype, shape = types.get(node.input[0], (None, ()))
    if dtype not in _FLOATS or len(shape) != 4 or not isinstance(shape[1], int) or shape[1] < 1:
        return Rewrite(
            label,
            False,
            f"left alone: its input is not an N x C x H x W float tensor with a known C (found {dtype} {list(shape)})",
        )
    taps, why = cached_taps(node.SerializeToString(), opset, factor)
    if taps is None:
        return Rewrite(label, False, f"left alone ({kind}, x{factor}): {why}")
    counter[0] += 1
    prefix = f"sdk_opt{counter[0]}_"
    channels, output, source = shape[1], node.output[0], node.input[0]
    if factor == 1:  # an identity resize: the probe found taps [1]
        graph.node[index].CopyFrom(helper.make_node("Identity", [source], [output], name=prefix + "identity"))
        return Rewrite(label, True, f"{kind}, x1 -> Identity")
    radius = (taps.shape[1] - 1) // 2
    size = 2 * radius + 1
    weights = numpy_helper.from_array(kernel_2d(taps, channels, _FLOATS[dtype]), prefix + "weights")
    graph.initializer.append(weights)
    nodes = []
    if radius:
        pads = numpy_helper.from_array(
            np.array([0, 0, radius, radius, 0, 0, radius, radius], dtype=np.int64), prefix + "pads"
        )
        graph.initializer.append(pads)
        nodes.append(
            helper.make_node("Pad", [source, pads.name], [prefix + "padded"], mode="edge", name=prefix + "pad")
        )
        source = prefix + "padded"
    nodes.append(
        helper.make_node(
            "Conv",
            [source, weights.name],
            [prefix + "phases"],
            group=channels,
            kernel_shape=[size, size],
            name=prefix + "conv",
        )
    )
    nodes.append(
        helper.make_node(
            "DepthToSpace", [prefix + "phases"], [output], blocksize=factor, mode="CRD", name=prefix + "depth_to_space"
        )
    )
    del graph.node[index]
    for offset, new in enumerate(nodes):
        graph.node.insert(index + offset, new)
    return Rewrite(
        label,
        True,
        f"{kind}, x{factor} -> Pad(edge, {radius}) + Conv {size}x{size} "
        f"({channels} -> {channels * factor * factor}, group {channels}) + DepthToSpace({factor})",
    )


def _drop_dead(graph) -> None:
    """Remove nodes and initializers nothing reads any more (the old scales, roi, Constants)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(n for n in node.input if n)
    kept = list(reversed(keep))
    del graph.node[:]
    graph.node.extend(kept)
    unused = [t for t in graph.initializer if t.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)


def optimise(proto, split_narrow: bool = True, scales: bool = True) -> tuple[object, list[Rewrite]]:
    """A rewritten copy of ``proto`` and what was done to each Resize/Upsample and narrow Conv node.

    ``split_narrow=False`` leaves the convolutions alone, ``scales=False`` the Muls, Adds and Subs with
    constants (the benchmarks' before/after of those rewrites).
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph, opset = model.graph, opset_of(model, 1)
    constants, types = Constants(graph), value_types(model)
    report, counter = [], [0]
    index = 0
    while index < len(graph.node):
        node = graph.node[index]
        if node.op_type in ("Resize", "Upsample") and node.domain in ("", "ai.onnx"):
            before = len(graph.node)
            report.append(_rewrite_one(graph, index, node, opset, constants, types, counter))
            index += len(graph.node) - before
        index += 1
    if split_narrow:
        report += split_narrow_convs(graph, constants, counter)
    if scales:
        report += scales_to_batchnorm(graph, constants, types, opset, counter)
    if any(r.done for r in report):
        _drop_dead(graph)
        onnx.checker.check_model(model)
    return model, report
