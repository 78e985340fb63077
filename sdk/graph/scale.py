"""The factor a fixed-scale graph upscales by: from static shapes, from ONNX shape inference on a
concrete size, else from a constant Resize or a DepthToSpace."""

from __future__ import annotations

from .inputs import spatial
from .tensors import Constants

# A concrete size to ask ONNX shape inference about when the graph's own sizes are dynamic.
_PROBE_SIDE = 24


def fixed_scale_of(model, image_input: str | None = None, layout: str = "NCHW") -> int | None:
    """The upscaling factor baked into a graph: from static shapes, from ONNX shape inference on a
    concrete size, else from a constant Resize or a DepthToSpace."""
    image = model.input(image_input) if image_input else next((i for i in model.inputs if len(i.shape) == 4), None)
    output = model.outputs[0]
    if image is None or len(output.shape) != 4:
        return None
    (h, w), (oh, ow) = spatial(image.shape, layout), spatial(output.shape, layout)
    if all(isinstance(d, int) and d > 0 for d in (h, w, oh, ow)):
        return _integral(oh / h)
    inferred = _scale_by_shape_inference(model, image, layout)
    if inferred is not None:
        return inferred
    return _scale_from_upsampling_ops(model)


def _scale_by_shape_inference(model, image, layout: str) -> int | None:
    """Give the image input a concrete size and let ONNX propagate it to the output."""
    import onnx
    from onnx import shape_inference

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    side = None
    for value in proto.graph.input:
        if value.name == image.name:
            dims = value.type.tensor_type.shape.dim
            for index, dim in enumerate(dims):
                if not dim.HasField("dim_value"):
                    dim.dim_value = _PROBE_SIDE if index in axes else (1 if index == 0 else 3)
            side = dims[axes[0]].dim_value
    # Forget the exporter's symbolic shapes, so that inference starts from the concrete input only.
    for output in proto.graph.output:
        output.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]
    try:
        inferred = shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # shape inference is a best effort; the op scan still runs
        return None
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    if not side or len(dims) != 4 or not dims[axes[0]].HasField("dim_value"):
        return None
    return _integral(dims[axes[0]].dim_value / side)


def _scale_from_upsampling_ops(model) -> int | None:
    graph = model.proto.graph
    constants = Constants(graph)
    for node in graph.node:
        if node.op_type == "DepthToSpace":
            return next(a.i for a in node.attribute if a.name == "blocksize")
        if node.op_type in ("Resize", "Upsample"):
            scales_name = node.input[2] if node.op_type == "Resize" and len(node.input) > 2 else node.input[-1]
            scales = constants.get(scales_name)
            if scales is not None and scales.size == 4:
                return _integral(float(scales[2]))
    return None


def _integral(value: float) -> int | None:
    return int(round(value)) if value >= 1 and abs(value - round(value)) < 1e-6 else None
