"""How much memory one run of a model takes at a given input size, derived from its graph.

Activations, not weights, decide what fits: SRCNN's first convolution at x3 on a 12-megapixel photo
is a 27.6 GB tensor. We derive the peak from the graph itself, the same way for every model: a copy
of the graph gets concrete input dimensions and the scale as a constant, ONNX shape inference gives
every intermediate tensor's size, and a walk in execution order sums what is alive at each node
(a convolution's unrolled columns are not counted: the engines we measured
compute them in bounded per-thread pieces). Activations grow with the number of
pixels, so one inference at a small probe size gives bytes per pixel, cached per model and scale.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

PROBE = 64  # probe side in input pixels: small enough to infer in milliseconds
# When shape inference cannot follow the graph (custom ops, data-dependent shapes) we assume the
# widest convolution's output, three times over (its input, itself, the next one), at output size.
_FALLBACK_LIVE = 3
_SMALL = 4096
# Post-processing's own float temporaries per output pixel, by the pipeline's colour mode (measured
# against peak RSS on ort-cpu): RGB rounds in place and transposes once; luma models rebuild the
# colour from upscaled chroma planes and a YCbCr -> RGB product.
_POST_BYTES = {
    "y": 56,
    "rgb": 24,
    "bgr": 24,
    "gray": 24,
}  # initializers up to this many values stay in the copy: shapes and scales live there


@dataclass(frozen=True)
class Footprint:
    """Peak bytes of one run = ``fixed`` (weights) + ``per_pixel`` x N x H x W (input pixels)."""

    fixed: int
    per_pixel: float
    derived: bool  # False: the fallback guess, not shape inference

    def peak(self, n: int, height: int, width: int) -> int:
        return int(self.fixed + self.per_pixel * n * height * width)

    def pixels_within(self, budget: int) -> int:
        """Input pixels (N x H x W) one run may have to stay within ``budget`` bytes."""
        return max(0, int((budget - self.fixed) / self.per_pixel)) if self.per_pixel > 0 else 2**62


_lock = threading.Lock()
_cache: dict[tuple, Footprint] = {}
_KEPT = 256  # footprints kept (model files x scales x probes); more evicts the oldest


def footprint(model, spec, scale: int, probe: tuple[int, int] | None = None) -> Footprint:
    """The model's footprint at ``scale``, cached per model file and scale (and probe size)."""
    stat = model.path.stat()
    key = (str(model.path), stat.st_mtime_ns, stat.st_size, scale, probe)
    with _lock:
        found = _cache.get(key)
    if found is None:
        found = _derive(model, spec, scale, probe or (PROBE, PROBE))
        with _lock:
            _cache[key] = found
            while len(_cache) > _KEPT:
                del _cache[next(iter(_cache))]
    return found


def _derive(model, spec, scale: int, probe: tuple[int, int]) -> Footprint:
    proto = model.proto
    weights = sum(_bytes(t.dims, t.data_type) for t in proto.graph.initializer)
    pixels = probe[0] * probe[1]
    try:
        live = _peak_live(_concrete(model, spec, scale, probe), spec.image_input)
        post = _POST_BYTES.get(getattr(spec, "color", "rgb"), 56) * scale * scale
        return Footprint(weights, live / pixels + post, True)
    except Exception as exc:  # shape inference gives up on custom ops and data-dependent shapes
        log.info("cannot infer the activation sizes of %s (%s); using a conservative estimate", model.name, exc)
        return Footprint(weights, _fallback_per_pixel(proto, spec, scale), False)


def _concrete(model, spec, scale: int, probe: tuple[int, int]):
    """A weightless copy of the graph with concrete input sizes and the scale as a constant."""
    import onnx
    from onnx import helper, numpy_helper

    source = model.proto
    graph = helper.make_graph([], source.graph.name, [], list(source.graph.output))
    graph.node.extend(source.graph.node)
    for tensor in source.graph.initializer:
        if _count(tensor.dims) <= _SMALL and tensor.data_location != onnx.TensorProto.EXTERNAL:
            graph.initializer.append(tensor)
        else:  # a big weight becomes an input of its shape: inference needs its dims, not its values
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    image_name = spec.image_input
    scale_name = getattr(spec, "scale_input", None)
    for value in source.graph.input:
        if value.name == image_name:
            graph.input.append(_with_dims(value, _image_dims(value, spec, probe)))
        elif value.name == scale_name:
            graph.initializer.append(numpy_helper.from_array(_scale_feed(value, scale), value.name))
        elif value.name not in {t.name for t in graph.initializer}:
            graph.input.append(value)
    copy = helper.make_model(graph, opset_imports=list(source.opset_import))
    copy.ir_version = source.ir_version
    return onnx.shape_inference.infer_shapes(copy, strict_mode=True, data_prop=True)


def _image_dims(value, spec, probe) -> list[int]:
    dims = value.type.tensor_type.shape.dim
    nhwc = getattr(spec, "layout", "NCHW") == "NHWC"
    c_dim = dims[3] if nhwc else dims[1]
    c = c_dim.dim_value if c_dim.HasField("dim_value") else (1 if getattr(spec, "color", "rgb") == "y" else 3)
    return [1, probe[0], probe[1], c] if nhwc else [1, c, probe[0], probe[1]]


def _with_dims(value, dims):
    from onnx import helper

    return helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type, dims)


def _scale_feed(value, scale: int) -> np.ndarray:
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if len(dims) == 1 and dims[0] in (4, None):
        return np.array([1, 1, scale, scale], dtype=dtype)
    return np.array(scale, dtype=dtype).reshape([d or 1 for d in dims])


def _peak_live(inferred, image_name: str) -> int:
    """The most bytes alive at once when the nodes run in order."""
    graph = inferred.graph
    sizes = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        if any(d < 0 for d in dims):
            raise ValueError(f"{value.name} has an unknown dimension")
        sizes[value.name] = _bytes(dims, tensor_type.elem_type)
    weights = {t.name for t in graph.initializer} | {i.name for i in graph.input if i.name != image_name}
    outputs = {o.name for o in graph.output}
    last_use = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    live = {image_name: sizes[image_name]}
    peak = sum(live.values())
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in weights:
                if name not in sizes:
                    raise ValueError(f"no shape for {name}")
                live[name] = sizes[name]
        peak = max(peak, sum(live.values()))
        for name in list(live):
            if last_use.get(name, -1) <= index and name not in outputs:
                del live[name]
    # The engine's output is copied into a numpy array, and post-processing makes one more float copy.
    return peak + 2 * sum(sizes.get(name, 0) for name in outputs)


def _input_dims(graph, name):
    for value in graph.input:
        if value.name == name:
            return [d.dim_value for d in value.type.tensor_type.shape.dim]
    return None


def _value_dims(graph, name):
    for value in [*graph.value_info, *graph.output]:
        if value.name == name:
            return [d.dim_value for d in value.type.tensor_type.shape.dim]
    return None


def _fallback_per_pixel(proto, spec, scale: int) -> float:
    widest = max((t.dims[0] for t in proto.graph.initializer if len(t.dims) == 4), default=64)
    return float(_FALLBACK_LIVE * widest * 4 * scale * scale)


@functools.cache
def _itemsize(elem_type: int) -> int:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    except Exception:
        return 4


def _count(dims) -> int:
    return math.prod(int(d) for d in dims)


def _bytes(dims, elem_type: int) -> int:
    return _count(dims) * _itemsize(elem_type)
