"""Shared pre- and post-processing: one code path for every backend, driven by the model's spec.

image (HxWx3 uint8 RGB) -> model tensor (NCHW float in the model's colour space and value range)
-> engine -> model tensor -> image. Backends only ever see tensors.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .errors import InputError, ModelError
from .metadata import PIPELINE_KEY, PipelineSpec

# Full-range BT.601 (JFIF), the conversion PIL's "YCbCr" mode uses and the ESPCN tutorial trains on.
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR.astype(np.float64)).astype(np.float32)


def spec_for(model) -> PipelineSpec:
    """The model's pipeline: its ``sdk.pipeline`` metadata, else inferred from its inputs."""
    if PIPELINE_KEY in model.metadata:
        spec = PipelineSpec.from_json(model.metadata[PIPELINE_KEY])
    else:
        spec = infer_spec(model)
    _check_against_model(spec, model)
    return spec


def infer_spec(model) -> PipelineSpec:
    """Defaults for a model exported without our metadata (e.g. straight from the tutorials).

    The image input is the 4-D float input with 1 or 3 channels. Three channels mean RGB in 0..255
    (the MMDeploy SRCNN); one channel means the Y of YCbCr in 0..1 (the PyTorch ESPCN tutorial). A
    1-D float input of 4 values is a runtime scale ``[1, 1, s, s]``; without one the scale must be
    readable from the graph.
    """
    images = [i for i in model.inputs if len(i.shape) == 4 and i.dtype.kind == "f" and i.shape[1] in (1, 3)]
    if not images:
        found = ", ".join(f"{i.name} {list(i.shape)} {i.dtype}" for i in model.inputs) or "none"
        raise ModelError(
            f"{model.name} has no image-like input (an N x C x H x W float tensor with C = 1 or 3); "
            f"its inputs: {found}. Export the model with such an input."
        )
    image = images[0]
    scales = [i for i in model.inputs if _looks_like_scales(i)]
    color, value_range = ("rgb", (0.0, 255.0)) if image.shape[1] == 3 else ("y", (0.0, 1.0))
    if scales:
        return PipelineSpec(color=color, value_range=value_range, image_input=image.name, scale_input=scales[0].name)
    scale = fixed_scale_of(model)
    if scale is None:
        raise ModelError(
            f"cannot tell by how much {model.name} upscales: it has no scale input and no constant "
            f"Resize/DepthToSpace; add '{PIPELINE_KEY}' metadata with its scale (see `sdk info`)"
        )
    return PipelineSpec(color=color, value_range=value_range, image_input=image.name, scale=scale)


def _looks_like_scales(info) -> bool:
    """A 1-D float input of four values (or of unknown length): Resize's ``[1, 1, s, s]``."""
    return len(info.shape) == 1 and info.dtype.kind == "f" and not (isinstance(info.shape[0], int) and info.shape[0] != 4)


def fixed_scale_of(model) -> int | None:
    """The upscaling factor baked into a graph: static shapes, a constant Resize, or DepthToSpace."""
    from onnx import numpy_helper

    image = next((i for i in model.inputs if len(i.shape) == 4), None)
    output = model.outputs[0]
    if image and len(output.shape) == 4 and all(isinstance(d, int) and d > 0 for d in (*image.shape[2:], *output.shape[2:])):
        return _integral(output.shape[2] / image.shape[2])
    graph = model.proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
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


def _check_against_model(spec: PipelineSpec, model) -> None:
    image = model.input(spec.image_input)
    channels = 1 if spec.color == "y" else 3
    if len(image.shape) != 4 or image.shape[1] not in (channels, None) and not isinstance(image.shape[1], str):
        raise ModelError(f"{model.name}: input {image.name!r} has shape {list(image.shape)}, "
                         f"but its pipeline ({spec.color}) needs N x {channels} x H x W")
    if spec.scale_input is not None:
        model.input(spec.scale_input)
    extra = {i.name for i in model.inputs} - {spec.image_input, spec.scale_input}
    if extra:
        raise ModelError(f"{model.name} has inputs the pipeline cannot fill: {sorted(extra)}; use Predictor.run for raw feeds")


@dataclass
class Prepared:
    """A batch turned into feeds, plus what post-processing needs to rebuild the images."""

    feeds: dict[str, np.ndarray]
    scale: int
    chroma: np.ndarray | None = None  # N x 2 x H x W float Cb/Cr for "y" models


class Pipeline:
    """Pre/post for one model. Stateless across calls, so one Pipeline serves every thread."""

    def __init__(self, spec: PipelineSpec, model_name: str, output_name: str):
        self.spec = spec
        self.model_name = model_name
        self.output_name = output_name
        low, high = spec.value_range
        self._unit = (low == 0.0 and high == 255.0)  # the common case needs no rescaling pass
        self._gain = (high - low) / 255.0
        self._low = low

    @property
    def runtime_scale(self) -> bool:
        return self.spec.scale_input is not None

    def check_scale(self, scale) -> int:
        """The scale to run at, or an InputError naming what to pass."""
        if scale is None:
            if self.runtime_scale:
                raise InputError(f"{self.model_name} takes its scale at run time: pass scale=N (an integer >= 1, e.g. 2, 3 or 4)")
            return self.spec.scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or float(scale) != int(scale):
            raise InputError(f"scale={scale!r} is not an integer: pass a whole number such as 2, 3 or 4")
        scale = int(scale)
        if scale < 1:
            raise InputError(f"scale={scale} must be a positive integer (1 or more)")
        if not self.runtime_scale and scale != self.spec.scale:
            raise InputError(
                f"{self.model_name} upscales by {self.spec.scale} only: drop scale= or pass {self.spec.scale} "
                "(the runtime-scale model 'srcnn3' takes any factor)"
            )
        return scale

    def prepare(self, batch: np.ndarray, scale: int) -> Prepared:
        """N x H x W x 3 uint8 RGB -> feeds for the engine."""
        chroma = None
        if self.spec.color == "y":
            # Y in 0..255 like the RGB path, so the value-range mapping below is the same for both.
            ycbcr = _to_ycbcr(batch)  # N x 3 x H x W float32
            tensor, chroma = np.ascontiguousarray(ycbcr[:, :1]), ycbcr[:, 1:]
        else:
            pixels = batch[..., ::-1] if self.spec.color == "bgr" else batch
            tensor = np.empty((batch.shape[0], 3, *batch.shape[1:3]), dtype=np.float32)
            np.copyto(tensor, pixels.transpose(0, 3, 1, 2), casting="unsafe")
        if not self._unit:
            tensor *= self._gain
            if self._low:
                tensor += self._low
        feeds = {self.spec.image_input: tensor}
        if self.runtime_scale:
            feeds[self.spec.scale_input] = np.array([1.0, 1.0, scale, scale], dtype=np.float32)
        return Prepared(feeds, scale, chroma)

    def finish(self, outputs: dict[str, np.ndarray], prepared: Prepared, bgr: bool = False) -> np.ndarray:
        """Engine outputs -> N x sH x sW x 3 uint8, RGB (or BGR when asked: no extra copy)."""
        tensor = outputs[self.output_name]
        source = prepared.feeds[self.spec.image_input]
        n, _, h, w = source.shape
        expected = (n, source.shape[1], h * prepared.scale, w * prepared.scale)
        if tuple(tensor.shape) != expected:
            raise ModelError(
                f"{self.model_name} returned a {tuple(tensor.shape)} tensor for a {tuple(source.shape)} input "
                f"at scale {prepared.scale}; expected {expected}. A runtime-scale model that always returns "
                "one size has its factor baked in: export it again with the factor as a real input."
            )
        if not self._unit:
            tensor = (tensor - self._low) * (1.0 / self._gain)
        if self.spec.color == "y":
            return _from_y_and_chroma(tensor, prepared.chroma, prepared.scale, flip=bgr)
        return _to_uint8_nhwc(tensor, flip=(self.spec.color == "bgr") != bgr)


def _to_uint8_nhwc(tensor: np.ndarray, flip: bool = False) -> np.ndarray:
    """N x 3 x H x W float 0..255 -> N x H x W x 3 uint8, rounded to nearest and clipped."""
    if not tensor.flags.writeable:
        tensor = tensor.copy()
    np.rint(tensor, out=tensor)
    np.clip(tensor, 0, 255, out=tensor)
    view = tensor.transpose(0, 2, 3, 1)
    if flip:
        view = view[..., ::-1]
    images = np.empty(view.shape, dtype=np.uint8)
    np.copyto(images, view, casting="unsafe")
    return images


def _to_ycbcr(batch: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 RGB -> N x 3 x H x W float32 Y, Cb, Cr in 0..255 (chroma centred on 128)."""
    ycbcr = np.einsum("ij,nhwj->nihw", _RGB_TO_YCBCR, batch.astype(np.float32), optimize=True)
    ycbcr[:, 1:] += 128.0
    return ycbcr


def _from_y_and_chroma(y: np.ndarray, chroma: np.ndarray, scale: int, flip: bool = False) -> np.ndarray:
    """Model Y (N x 1 x sH x sW, 0..255) + low-res chroma (0..255) -> N x sH x sW x 3 uint8 RGB.

    Chroma is upscaled with PIL's bicubic filter, as the ESPCN tutorial does, so our output matches
    the reference pipeline's.
    """
    from PIL import Image

    n, _, height, width = y.shape
    ycbcr = np.empty((n, 3, height, width), dtype=np.float32)
    ycbcr[:, 0] = y[:, 0]
    for i in range(n):
        for c in range(2):
            plane = Image.fromarray(chroma[i, c], mode="F").resize((width, height), Image.Resampling.BICUBIC)
            ycbcr[i, c + 1] = np.asarray(plane)
    ycbcr[:, 1:] -= 128.0
    rgb = np.einsum("ij,njhw->nihw", _YCBCR_TO_RGB, ycbcr, optimize=True)
    return _to_uint8_nhwc(rgb, flip)
