"""The bytes a run keeps alive at once, read from the graph (sdk.footprint turns them into a budget).

A copy of the graph gets concrete input dimensions and the scale as a constant, ONNX shape inference
gives every intermediate tensor's size, and a walk in execution order sums what is alive at each node
(a convolution's unrolled columns are not counted: the engines we measured compute them in bounded
per-thread pieces).
"""

from __future__ import annotations

import numpy as np

from .tensors import count, dims, nbytes, np_dtype

# When shape inference cannot follow the graph (custom ops, data-dependent shapes) we assume the
# widest convolution's output, three times over (its input, itself, the next one), at output size.
_FALLBACK_LIVE = 3
_SMALL = 4096  # initializers up to this many values stay in the copy: shapes and scales live there


def weight_bytes(proto) -> int:
    """The bytes of a model's initializers (its weights)."""
    return sum(nbytes(t.dims, t.data_type) for t in proto.graph.initializer)


def concrete_copy(model, spec, scale: int, probe: tuple[int, int]):
    """A weightless copy of the graph with concrete input sizes and the scale as a constant."""
    import onnx
    from onnx import helper, numpy_helper

    source = model.proto
    graph = helper.make_graph([], source.graph.name, [], list(source.graph.output))
    graph.node.extend(source.graph.node)
    for tensor in source.graph.initializer:
        if count(tensor.dims) <= _SMALL and tensor.data_location != onnx.TensorProto.EXTERNAL:
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
    declared = value.type.tensor_type.shape.dim
    nhwc = getattr(spec, "layout", "NCHW") == "NHWC"
    c_dim = declared[3] if nhwc else declared[1]
    c = c_dim.dim_value if c_dim.HasField("dim_value") else (1 if getattr(spec, "color", "rgb") == "y" else 3)
    return [1, probe[0], probe[1], c] if nhwc else [1, c, probe[0], probe[1]]


def _with_dims(value, shape):
    from onnx import helper

    return helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type, shape)


def _scale_feed(value, scale: int) -> np.ndarray:
    dtype = np_dtype(value.type.tensor_type.elem_type)
    shape = dims(value)
    if len(shape) == 1 and shape[0] in (4, None):
        return np.array([1, 1, scale, scale], dtype=dtype)
    return np.array(scale, dtype=dtype).reshape([d or 1 for d in shape])


def peak_live_bytes(inferred, image_name: str) -> int:
    """The most bytes alive at once when the nodes run in order."""
    graph = inferred.graph
    sizes = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        shape = dims(value)
        if None in shape:
            raise ValueError(f"{value.name} has an unknown dimension")
        sizes[value.name] = nbytes(shape, tensor_type.elem_type)  # type: ignore[arg-type]  # no None, checked above
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


def fallback_per_pixel(proto, scale: int) -> float:
    """Bytes per input pixel when shape inference cannot follow the graph: the widest convolution's
    float32 output, _FALLBACK_LIVE times over, at output size."""
    widest = max((t.dims[0] for t in proto.graph.initializer if len(t.dims) == 4), default=64)
    return float(_FALLBACK_LIVE * widest * np.dtype(np.float32).itemsize * scale * scale)
