"""How much arithmetic one call of a model is: FLOPs counted from its graph at a given size.

Only convolutions and matrix products are counted (2 FLOPs per multiply-add): they are what an
engine spends its time on, and what the sgemm floor measures. Resize, activations and adds are
left out, so the floor is a lower bound.
"""

from __future__ import annotations

import numpy as np


def model_flops(model, size: int, batch: int, scale: int) -> float:
    """FLOPs of one call on ``batch`` images of ``size`` x ``size`` at ``scale``; 0 when the graph's
    shapes cannot be inferred."""
    import onnx

    from ..graph.inputs import shape_inputs
    from ..optimize.graph import specialise
    from ..spec import resolve

    spec = resolve(model).spec
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    if spec.scale_input is not None and spec.scale_input in shape_inputs(proto):
        proto = specialise(proto, {spec.scale_input: np.array([1, 1, scale, scale], np.float32)})
    from ..color import CHANNELS

    fixed = (batch, CHANNELS[spec.color], size, size)
    if spec.layout == "NHWC":
        fixed = (batch, size, size, CHANNELS[spec.color])
    for value in proto.graph.input:
        if value.name == spec.image_input:
            for dim, length in zip(value.type.tensor_type.shape.dim, fixed):
                dim.Clear()
                dim.dim_value = length
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:
        return 0.0
    shapes = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    weights = {t.name: list(t.dims) for t in inferred.graph.initializer}
    total = 0.0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            out = shapes.get(node.output[0])
            kernel = weights.get(node.input[1]) or shapes.get(node.input[1])
            if not out or not kernel or 0 in out:
                return 0.0
            # kernel: Cout x Cin/group x kh x kw; every output value is Cin/group*kh*kw multiply-adds.
            total += 2.0 * float(np.prod(out)) * float(np.prod(kernel[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            if not a or not out or 0 in a or 0 in out:
                return 0.0
            inner = (
                a[-2] if node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute) else a[-1]
            )
            total += 2.0 * float(np.prod(out)) * inner
    return total
