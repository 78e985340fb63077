"""How much arithmetic one call of a model is: FLOPs counted from its graph at a given size.

Only convolutions and matrix products are counted (2 FLOPs per multiply-add): they are what an
engine spends its time on, and what the sgemm floor measures. Resize, activations and adds are
left out, so the floor is a lower bound.
"""

from __future__ import annotations

import numpy as np


def model_flops(model, size: int, batch: int, scale: int, declared: dict | None = None) -> float:
    """FLOPs of one call on ``batch`` images of ``size`` x ``size`` at ``scale``; 0 when the graph's
    shapes cannot be inferred. ``declared``: the pipeline fields given on the command line."""
    found = node_flops(model, size, batch, scale, declared)
    return 0.0 if found is None else sum(found.values())


def node_flops(model, size: int, batch: int, scale: int, declared: dict | None = None) -> dict[str, float] | None:
    """FLOPs of each convolution and matrix product of one call, by node name (its first output's
    name where it has none); None when a shape they need cannot be inferred."""
    found = graph_shapes(model, size, batch, scale, declared)
    if found is None:
        return None
    graph, shapes, weights = found
    counted = {}
    for node in graph.node:
        if node.op_type == "Conv":
            out = shapes.get(node.output[0])
            kernel = weights.get(node.input[1]) or shapes.get(node.input[1])
            if not out or not kernel or 0 in out:
                return None
            # kernel: Cout x Cin/group x kh x kw; every output value is Cin/group*kh*kw multiply-adds.
            counted[_key(node, counted)] = 2.0 * float(np.prod(out)) * float(np.prod(kernel[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            if not a or not out or 0 in a or 0 in out:
                return None
            inner = (
                a[-2] if node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute) else a[-1]
            )
            counted[_key(node, counted)] = 2.0 * float(np.prod(out)) * inner
    return counted


def _key(node, taken: dict) -> str:
    name = node.name or node.output[0]
    return name if name not in taken else f"{name}:{node.output[0]}"


def graph_shapes(model, size: int, batch: int, scale: int, declared: dict | None = None):
    """(graph, {tensor: shape}, {initializer: dims}) of the model at this size, batch and scale, its
    factor input folded in; None when ONNX cannot infer the shapes."""
    import onnx

    from ..graph.inputs import shape_inputs
    from ..optimize.graph import specialise
    from ..resolution import resolve

    spec = resolve(model, declared).spec
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
        inferred = onnx.shape_inference.infer_shapes(fold_shape_arithmetic(proto), data_prop=True)
    except Exception:
        return None
    shapes = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    weights = {t.name: list(t.dims) for t in inferred.graph.initializer}
    return inferred.graph, shapes, weights


# Small integer tensors (shapes, window counts) are what the folding computes; anything bigger is data.
_SMALL = 64


def fold_shape_arithmetic(proto, rounds: int = 32):
    """``proto`` with the arithmetic on its shapes computed: Shape of a tensor whose shape is known,
    and every node fed only such small constants, become constants.

    ONNX's data propagation stops at Div (``H // window`` in window attention), which leaves the
    shapes of everything downstream unknown; evaluating those few integer nodes with ONNX's reference
    implementation, round after round of shape inference, gives exact shapes instead.
    """
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer if np.prod(t.dims) <= _SMALL}
    for _ in range(rounds):
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        dims = {}
        for value in (*inferred.graph.input, *inferred.graph.value_info):
            shape = value.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in shape):
                dims[value.name] = [d.dim_value for d in shape]
        folded = []
        for node in graph.node:
            value = None
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                value = numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type == "Shape" and node.input[0] in dims and not node.attribute:
                value = np.array(dims[node.input[0]], dtype=np.int64)
            elif node.input and all(name in known for name in node.input if name) and node.domain in ("", "ai.onnx"):
                single = helper.make_model(
                    helper.make_graph(
                        [node],
                        "fold",
                        [],
                        [helper.make_tensor_value_info(out, onnx.TensorProto.UNDEFINED, None) for out in node.output],
                        [numpy_helper.from_array(known[name], name) for name in node.input if name],
                    ),
                    opset_imports=model.opset_import,
                )
                try:
                    value = ReferenceEvaluator(single).run(None, {})[0]
                except Exception:
                    value = None
            if value is not None and np.size(value) <= _SMALL and len(node.output) == 1:
                known[node.output[0]] = np.asarray(value)
                folded.append(node)
        if not folded:
            return model
        for node in folded:
            graph.node.remove(node)
            graph.initializer.append(numpy_helper.from_array(known[node.output[0]], node.output[0]))
    return model
