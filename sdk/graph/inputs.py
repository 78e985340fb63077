"""Which input is which, read from the graph: the image (and its layout), the runtime scale, and the
inputs whose values decide an output's shape."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError

# Input dtypes the pipeline casts to and from (the tensor it builds is always float32).
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
# (op_type, input slot) pairs whose value decides an output *shape*.
_SHAPE_SLOTS = {("Resize", 1), ("Resize", 2), ("Resize", 3), ("Upsample", 1)}


def image_input(model, name: str | None, layout: str | None):
    if name is not None:
        return model.input(name)
    images = [
        i
        for i in model.inputs
        if len(i.shape) == 4 and is_float(i.dtype) and (layout_of(i) == layout if layout else layout_of(i) is not None)
    ]
    if not images:
        found = ", ".join(f"{i.name} {list(i.shape)} {i.dtype}" for i in model.inputs) or "none"
        raise ModelError(
            f"{model.name} has no image-like input (a float N x C x H x W or N x H x W x C tensor with "
            f"C = 1 or 3); its inputs: {found}. Name it: pipeline={{'image_input': NAME, 'layout': 'NCHW'}}"
        )
    return images[0]


def layout_of(info) -> str | None:
    """NCHW when dim 1 can be a channel count (1, 3 or dynamic), else NHWC when dim 3 can."""
    if len(info.shape) != 4:
        return None

    def fits(d):
        return d in (1, 3) or not isinstance(d, int)

    if fits(info.shape[1]) and not (
        not isinstance(info.shape[1], int) and isinstance(info.shape[3], int) and info.shape[3] in (1, 3)
    ):
        return "NCHW"
    if fits(info.shape[3]):
        return "NHWC"
    return None


def layout_is_ambiguous(info) -> bool:
    """True unless exactly one of axis 1 and axis 3 is a fixed channel count (1 or 3)."""

    def fixed(d):
        return isinstance(d, int) and d in (1, 3)

    return len(info.shape) == 4 and fixed(info.shape[1]) == fixed(info.shape[3])


def is_float(dtype) -> bool:
    return np.dtype(dtype).name in FLOAT_DTYPES


def looks_like_scales(info) -> bool:
    """A 1-D float input of four values (or of unknown length): Resize's ``[1, 1, s, s]``."""
    return len(info.shape) == 1 and is_float(info.dtype) and not (isinstance(info.shape[0], int) and info.shape[0] != 4)


def spatial(shape, layout: str) -> tuple:
    return tuple(shape[2:4]) if layout == "NCHW" else tuple(shape[1:3])


def shape_inputs(proto) -> list[str]:
    """Graph inputs whose values end up deciding an output shape (Resize/Upsample scales or sizes).

    The inputs are followed forward through any chain of nodes, so a factor that is cast or
    concatenated before it reaches Resize is found too.
    """
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    found = []
    for value in graph.input:
        if value.name in initializers:
            continue
        reached = {value.name}
        hits = False
        for node in graph.node:  # nodes are topologically sorted in a valid ONNX graph
            used = [slot for slot, name in enumerate(node.input) if name in reached]
            if not used:
                continue
            if any((node.op_type, slot) in _SHAPE_SLOTS for slot in used):
                hits = True
                break
            reached.update(node.output)
        if hits:
            found.append(value.name)
    return found
