"""An integer-factor Resize rewritten as a polyphase convolution followed by DepthToSpace.

Upscaling by an integer ``s`` with a separable kernel (nearest, linear, cubic) is, for each of the
``s`` output phases along an axis, a fixed short filter on the input grid: output ``s*i + p`` is
``sum_o k[p, o] * x[clamp(i + o)]``. In 2-D that is one convolution with ``s*s`` outputs per channel
on the *low-resolution* grid, whose outputs DepthToSpace interleaves into the big picture. ONNX's
border rule (indices clamped to the edge) is exactly an edge ``Pad`` in front of that convolution.
Engines run such a convolution far faster than their generic Resize kernels (ONNX Runtime spent
about 45% of SRCNN's time in its cubic Resize).

The filter taps are not derived from formulas of our own: they are read off ONNX's reference
implementation (``onnx.reference``) by resizing unit impulses with the node's own attributes. The
same probe then checks that pad + convolution reproduces the reference *exactly*, borders
included, at several input lengths. Whatever does not pass - a non-integer factor, align_corners
(its taps drift with the image size), tf_crop_and_resize, exclude_outside, an antialiased
downscale - is left alone, with the reason recorded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# Input lengths the rewrite is checked at: tiny ones exercise the clamped borders on both sides at
# once, 16 has a clean interior where the taps are read.
_CHECK_LENGTHS = (1, 2, 3, 5, 16)
_PROBE_LENGTH = 16
_ZERO = 1e-9  # a tap this small is an exact zero computed in floating point
_EXACT = 1e-6  # pad + conv must match the reference to float32 rounding


@dataclass(frozen=True)
class Rewrite:
    """What the pass did (or why it did not) to one node, for logs and the cache's record."""

    node: str
    done: bool
    what: str

    def __str__(self) -> str:
        return f"{self.node}: {self.what}"


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(node) -> str:
    attrs = _attributes(node)
    mode = _text(attrs.get("mode", "nearest"))
    coords = _text(
        attrs.get("coordinate_transformation_mode", "asymmetric" if node.op_type == "Upsample" else "half_pixel")
    )
    return f"{mode}, {coords}"


def _probe_model(node, opset: int, factor: int, length: int):
    """A one-node model: the node's Resize applied along the last axis of N impulses of ``length``."""
    from onnx import TensorProto, helper, numpy_helper

    attrs = {k: v for k, v in _attributes(node).items() if k != "scales"}
    scales = numpy_helper.from_array(np.array([1, 1, 1, factor], dtype=np.float32), "scales")
    if node.op_type == "Upsample" and opset < 9:
        inputs, inits = ["x"], []
        attrs["scales"] = [1.0, 1.0, 1.0, float(factor)]
    elif node.op_type == "Upsample" or opset < 11:
        inputs, inits = ["x", "scales"], [scales]
    else:
        inputs, inits = ["x", "", "scales"], [scales]
    probe = helper.make_node(node.op_type, inputs, ["y"], **attrs)
    graph = helper.make_graph(
        [probe],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [length, 1, 1, length])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _reference_matrix(node, opset: int, factor: int, length: int) -> np.ndarray:
    """W with y = W @ x for the node's 1-D resize of a ``length`` signal (from onnx.reference)."""
    from onnx.reference import ReferenceEvaluator

    session = ReferenceEvaluator(_probe_model(node, opset, factor, length))
    # The probe is computed in float64: float32 impulses would round the taps we read off.
    impulses = np.eye(length, dtype=np.float64).reshape(length, 1, 1, length)
    (out,) = session.run(None, {"x": impulses})
    out = np.asarray(out, dtype=np.float64)
    if out.shape != (length, 1, 1, factor * length):
        raise ValueError(f"the reference resize gave shape {out.shape}")
    return out[:, 0, 0, :].T  # (factor * length) x length


def _conv_matrix(taps: np.ndarray, factor: int, length: int) -> np.ndarray:
    """W of edge padding + the polyphase filter ``taps`` (factor x (2R+1))."""
    radius = (taps.shape[1] - 1) // 2
    matrix = np.zeros((factor * length, length))
    for i in range(length):
        for p in range(factor):
            for o in range(-radius, radius + 1):
                matrix[factor * i + p, min(max(i + o, 0), length - 1)] += taps[p, o + radius]
    return matrix


def polyphase_taps(node, opset: int, factor: int) -> tuple[np.ndarray | None, str]:
    """(taps, "") with taps[p, o + R] the weight of input i + o in output s*i + p; or (None, why not)."""
    try:
        interior = _reference_matrix(node, opset, factor, _PROBE_LENGTH)
    except Exception as exc:  # an attribute combination the reference refuses: not ours to rewrite
        return None, f"the ONNX reference cannot run it ({type(exc).__name__}: {exc})"
    centre = _PROBE_LENGTH // 2
    rows = interior[factor * centre : factor * (centre + 1)]
    used = np.nonzero(np.abs(rows) > _ZERO)[1] - centre
    radius = int(np.abs(used).max()) if used.size else 0
    if radius > _PROBE_LENGTH // 4:
        return None, "its taps reach too far to be a short filter"
    taps = rows[:, centre - radius : centre + radius + 1].copy()
    taps[np.abs(taps) <= _ZERO] = 0.0
    for length in _CHECK_LENGTHS:
        expected = interior if length == _PROBE_LENGTH else _reference_matrix(node, opset, factor, length)
        if expected.shape != (factor * length, length) or not np.allclose(
            _conv_matrix(taps, factor, length), expected, rtol=0, atol=_EXACT
        ):
            return None, f"it is not one filter per phase with clamped borders (checked at length {length})"
    return taps, ""


@functools.lru_cache(maxsize=64)
def cached_taps(node_bytes: bytes, opset: int, factor: int) -> tuple[np.ndarray | None, str]:
    from onnx import NodeProto

    node = NodeProto()
    node.ParseFromString(node_bytes)
    return polyphase_taps(node, opset, factor)


def kernel_2d(taps: np.ndarray, channels: int, dtype) -> np.ndarray:
    """Grouped-conv weights [C * s * s, 1, K, K]: channel c's phase (ph, pw) is the outer product of
    the two axes' taps, in DepthToSpace CRD order (c, ph, pw)."""
    factor, size = taps.shape
    phases = np.einsum("ak,bl->abkl", taps, taps).reshape(factor * factor, 1, size, size)
    return np.tile(phases, (channels, 1, 1, 1)).astype(dtype)
