"""How far an output pixel sees into the input: the receptive field, read from the graph.

Tiles need this many input pixels of context around the part of the picture they write, so that the
stitched result equals the whole-image run (sdk.planning turns it into a tile margin, per scale).
"""

from __future__ import annotations

from .tensors import Constants

# Ops that map each pixel to itself (or only mix channels): the receptive field passes through.
_POINTWISE = {
    "Abs",
    "Add",
    "And",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "Clip",
    "Concat",
    "Div",
    "Dropout",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "IsInf",
    "IsNaN",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "Max",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "PRelu",
    "Pow",
    "QuantizeLinear",
    "DequantizeLinear",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Sigmoid",
    "Sign",
    "Softplus",
    "Softsign",
    "Split",
    "Sqrt",
    "Sub",
    "Sum",
    "Tanh",
    "ThresholdedRelu",
    "Where",
    "Xor",
}
# Ops whose outputs describe shapes, not pixels: data that depends on them carries no context.
_SHAPE_ONLY = {"Shape", "Size", "Constant", "ConstantOfShape"}
_RESIZE_TAPS = {"cubic": 2, "linear": 1, "bilinear": 1, "nearest": 1}


def receptive_radius(proto, image_input: str, scale: int) -> float | None:
    """How far (in input pixels) an output pixel can see, or None when the graph has a layer whose
    reach cannot be bounded locally (attention, reshapes, global pooling, unknown ops).

    Each tensor derived from the image carries (radius in input pixels, resolution relative to the
    input). Convolutions and pools add half their dilated kernel at their resolution, Resize adds its
    interpolation taps, DepthToSpace/SpaceToDepth change the resolution.
    """
    constants = Constants(proto.graph)
    reach: dict[str, tuple[float, float]] = {image_input: (0.0, 1.0)}
    for node in proto.graph.node:
        found = [reach[name] for name in node.input if name in reach]
        if not found or node.op_type in _SHAPE_ONLY:
            continue
        radius = max(r for r, _ in found)
        factor = max(f for _, f in found)
        attrs = {a.name: a for a in node.attribute}
        op = node.op_type
        if op in _POINTWISE or op == "Transpose":
            pass
        elif op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"):
            kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else None
            weight = constants.dims(node.input[1]) if op.startswith("Conv") and len(node.input) > 1 else None
            if kernel is None and weight is not None:
                kernel = list(weight[2:])
            if not kernel:
                return None
            dilations = list(attrs["dilations"].ints) if "dilations" in attrs else [1] * len(kernel)
            strides = list(attrs["strides"].ints) if "strides" in attrs else [1] * len(kernel)
            half = max((k - 1) * d for k, d in zip(kernel, dilations)) / 2
            stride = max(strides)
            if op == "ConvTranspose":
                factor *= stride
                radius += half / factor
            else:
                radius += half / factor
                factor /= stride
        elif op in ("Resize", "Upsample"):
            mode = attrs["mode"].s.decode() if "mode" in attrs else "nearest"
            taps = _RESIZE_TAPS.get(mode)
            if taps is None:
                return None
            radius += taps / factor
            factor *= _resize_factor(node, constants, scale)
        elif op == "DepthToSpace":
            factor *= attrs["blocksize"].i
        elif op == "SpaceToDepth":
            block = attrs["blocksize"].i
            radius += (block - 1) / factor
            factor /= block
        elif op == "Pad":
            pass  # the padding is outside the picture; the tile's own margin covers it
        else:
            return None
        for name in node.output:
            reach[name] = (radius, factor)
    outputs = [reach[o.name][0] for o in proto.graph.output if o.name in reach]
    return max(outputs) if outputs else None


def _resize_factor(node, constants: Constants, scale: int) -> float:
    """The upsampling factor of a Resize: its constant scales, else the run's own scale."""
    names = node.input[2:3] if node.op_type == "Resize" else node.input[1:2]
    for name in names:
        values = constants.get(name)
        if values is not None and values.size >= 2 and float(values.ravel()[-1]) > 0:
            return float(values.ravel()[-1])
    return float(scale)
