"""The PyTorch eager reference for a model file: the network every backend is judged against.

A bundled model (or a file ``sdk export`` wrote) is rebuilt from its zoo card, the PyTorch module
it was exported from, with the weights read from the ONNX file itself: a retrained ``.npz`` next to
an older export then cannot make the reference disagree with the file under test. Any other
SRCNN- or ESPCN-shaped graph runs through :class:`GraphModule`, which executes the ONNX nodes with
the matching torch operators. Only the benchmark's torch worker imports this module: it lives in the
zoo, the one package that imports torch, so that ``sdk bench`` without torch never loads it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from ..errors import ModelError


def reference_module(model) -> tuple[nn.Module, list[str], str]:
    """(module, its input names in call order, where it came from) for an :class:`sdk.model.Model`."""
    found = _from_zoo(model)
    if found is not None:
        return found
    return GraphModule(model.proto), [i.name for i in model.inputs], "ONNX graph run by torch operators"


def _from_zoo(model):
    from .catalog import CARDS

    card = next((c for c in CARDS.values() if model.name in (c.name, c.export_file.removesuffix(".onnx"))), None)
    if card is None:
        return None
    graph = model.proto.graph
    # The zoo's residual variant adds the bicubic picture last: the graph's output comes from an Add.
    residual = any(n.op_type == "Add" and graph.output[0].name in n.output for n in graph.node)
    network = card.build(residual)
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    own = network.state_dict()
    if set(own) - set(weights) or any(own[k].shape != weights[k].shape for k in own):
        return None  # not the card's network after all (renamed or reshaped weights): run the graph
    network.load_state_dict({k: weights[k] for k in own})
    return network.eval(), card.input_names(), f"sdk.zoo {card.name} network, weights from the ONNX file"


class GraphModule(nn.Module):
    """An ONNX graph executed node by node with torch operators (the ops SR networks are made of)."""

    def __init__(self, proto):
        super().__init__()
        graph = proto.graph
        self.constants = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in self.constants]
        self.output_name = graph.output[0].name
        self.nodes = []
        for node in graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                # Folded into the weights now, so that .to(device) moves them with the rest.
                self.constants[node.output[0]] = torch.from_numpy(numpy_helper.to_array(attrs["value"]).copy())
            else:
                self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        unknown = sorted({op for op, *_ in self.nodes} - set(_OPS))
        if unknown:
            raise ModelError(
                f"the torch reference cannot run ONNX op(s) {unknown}; it knows Constant and {sorted(_OPS)}"
            )

    def _apply(self, fn, *args, **kwargs):
        # .to(device) moves the weights too: they live in a plain dict, not in registered buffers.
        self.constants = {k: fn(v) for k, v in self.constants.items()}
        return super()._apply(fn, *args, **kwargs)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor | None] = {"": None, **self.constants, **dict(zip(self.input_names, inputs))}
        for op, names, outputs, attrs in self.nodes:
            values[outputs[0]] = _OPS[op]([values[n] for n in names], attrs)
        return values[self.output_name]


def _conv(x, attrs):
    pads = attrs.get("pads", [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        x[0] = F.pad(x[0], (pads[1], pads[3], pads[0], pads[2]))
        pads = [0, 0]
    return F.conv2d(
        x[0],
        x[1],
        x[2] if len(x) > 2 else None,
        stride=attrs.get("strides", 1),
        padding=pads[:2],
        dilation=attrs.get("dilations", 1),
        groups=attrs.get("group", 1),
    )


def _floats(tensor) -> list[float]:
    return [float(v) for v in tensor.detach().reshape(-1).cpu().tolist()]


def _resize(x, attrs):
    """ONNX Resize (opset 11) / Upsample (opset 9) -> F.interpolate with the same geometry."""
    image = x[0]
    mode = attrs.get("mode", b"nearest").decode()
    transform = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
    scales = x[-1] if len(x) == 2 else (x[2] if len(x) > 2 else None)  # Upsample: (X, scales)
    sizes = x[3] if len(x) > 3 else None
    kwargs = {}
    if sizes is not None and sizes.numel():
        kwargs["size"] = [int(v) for v in _floats(sizes)[2:]]
    elif scales is not None and scales.numel():
        kwargs["scale_factor"] = tuple(_floats(scales)[2:])
    else:
        raise ModelError("the torch reference met a Resize with neither scales nor sizes")
    if mode == "nearest":
        if transform != "asymmetric":
            raise ModelError(
                f"the torch reference runs nearest Resize only with asymmetric coordinates, not {transform}"
            )
        return F.interpolate(image, mode="nearest", **kwargs)
    if mode == "cubic" and attrs.get("cubic_coeff_a", -0.75) != -0.75:
        raise ModelError("the torch reference runs cubic Resize only with cubic_coeff_a = -0.75 (torch's kernel)")
    if transform not in ("pytorch_half_pixel", "half_pixel", "align_corners"):
        raise ModelError(f"the torch reference cannot run Resize with coordinate_transformation_mode={transform}")
    torch_mode = {"cubic": "bicubic", "linear": "bilinear"}[mode]
    return F.interpolate(image, mode=torch_mode, align_corners=transform == "align_corners", **kwargs)


def _depth_to_space(x, attrs):
    block = attrs["blocksize"]
    if attrs.get("mode", b"DCR").decode() == "CRD":
        return F.pixel_shuffle(x[0], block)
    n, c, h, w = x[0].shape
    out = x[0].reshape(n, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
    return out.reshape(n, c // block**2, h * block, w * block)


_OPS: dict[str, Callable] = {
    "Conv": _conv,
    "Relu": lambda x, a: F.relu(x[0]),
    "Add": lambda x, a: x[0] + x[1],
    "Sub": lambda x, a: x[0] - x[1],
    "Mul": lambda x, a: x[0] * x[1],
    "Div": lambda x, a: x[0] / x[1],
    "Clip": lambda x, a: torch.clamp(
        x[0], a.get("min", x[1] if len(x) > 1 else None), a.get("max", x[2] if len(x) > 2 else None)
    ),
    "Identity": lambda x, a: x[0],
    "Resize": _resize,
    "Upsample": _resize,
    "DepthToSpace": _depth_to_space,
}
