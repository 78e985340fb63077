"""The shared pre- and post-processing: one code path for every backend, driven by the model's spec.

    images (N x H x W x 3 RGB, uint8 0..255 or uint16 0..65535)
      -> prepare:    model-space tensor (N x C x H x W float32, the model's colour and value range)
      -> run_tensor: padded to the model's size rules, laid out and cast as the engine wants, run,
                     and brought back to N x C x sH x sW float32
      -> finish:     images (N x sH x sW x 3, the dtype that came in)

16-bit pictures (10-bit video, 16-bit scans) are brought to the same 0..255 scale in float32 on the
way in, so the model sees what it sees for 8-bit ones, and go back to uint16 on the way out: no
precision is cut to 8 bits anywhere.

Tiling works between prepare and finish on model-space tensors (or on uint8 windows, calling all
three per window), so it never needs to know the model's layout, dtype or size rules. Backends only
ever see the feeds. Nothing here keeps state across calls: one Pipeline serves every thread.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from . import color
from .errors import InputError, ModelError, SDKError
from .spec import PIPELINE_KEY, PipelineSpec, static_size

_PIXELS_8 = np.dtype(np.uint8)


@dataclass(frozen=True)
class Prepared:
    """A batch in model space, plus what finish needs to rebuild the images."""

    tensor: np.ndarray  # N x C x H x W float32, always NCHW, in the model's colour and value range
    scale: int
    chroma: np.ndarray | None = None  # N x 2 x H x W float32 Cb/Cr (0..255) for "y" models
    dtype: np.dtype = _PIXELS_8  # the pictures' own: finish gives them back in it


class Pipeline:
    """Pre/post for one model: a spec plus the dtypes and sizes of the model's inputs."""

    def __init__(self, spec: PipelineSpec, model):
        self.spec = spec
        self.model_name = model.name
        self.output_name = model.outputs[0].name
        self.input_dtype = np.dtype(model.input(spec.image_input).dtype)
        self.scale_dtype = np.dtype(model.input(spec.scale_input).dtype) if spec.scale_input else None
        self.static_size = static_size(spec, model)
        # value = pixel * gain + low on the way in; pixel = (value - low) / gain on the way out.
        self._gain_in, self._low_in = _affine(spec.value_range)
        self._gain_out, self._low_out = _affine(spec.out_range)
        # Any H x W runs as it is: the common case skips padded_size (a call costs microseconds with
        # the caches as cold as an engine run leaves them, and feeds and output each need the size).
        self._any_size = self.static_size is None and spec.multiple_of == 1

    @property
    def runtime_scale(self) -> bool:
        return self.spec.scale_input is not None

    def check_scale(self, scale: Any) -> int:
        """The scale to run at, or an InputError naming what to pass."""
        if scale is None:
            if self.runtime_scale:
                raise InputError(
                    f"{self.model_name} takes its scale at run time: pass scale=N (an integer >= 1, e.g. 2, 3 or 4)"
                )
            return cast(int, self.spec.scale)  # a spec without a scale input has a scale (PipelineSpec checks)
        if type(scale) is not int:  # the common case skips the abstract-class checks
            if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not float(scale).is_integer():
                raise InputError(f"scale={scale!r} is not an integer: pass a whole number such as 2, 3 or 4")
            scale = int(float(scale))
        if scale < 1:
            raise InputError(f"scale={scale} must be a positive integer (1 or more)")
        if not self.runtime_scale and scale != self.spec.scale:
            raise InputError(
                f"{self.model_name} upscales by {self.spec.scale} only: drop scale= or pass {self.spec.scale} "
                "(the runtime-scale model 'srcnn3' takes any factor)"
            )
        return scale

    # -- images -> model space ------------------------------------------------------------------

    def prepare(self, batch: np.ndarray, scale: int) -> Prepared:
        """N x H x W x 3 RGB (uint8, or uint16 over 0..65535) -> the model-space tensor."""
        chroma = None
        dtype = batch.dtype
        if dtype == _UINT16:
            batch = np.multiply(batch, np.float32(255 / 65535), dtype=np.float32)
        if self.spec.color == "y":
            ycbcr = color.rgb_to_ycbcr(batch)
            tensor, chroma = np.ascontiguousarray(ycbcr[:, :1]), ycbcr[:, 1:]  # a copy only when N > 1
        elif self.spec.color == "gray":
            tensor = color.luma(batch)[:, None]
        else:
            pixels = batch[..., ::-1] if self.spec.color == "bgr" else batch
            tensor = np.empty((batch.shape[0], 3, *batch.shape[1:3]), dtype=np.float32)
            np.copyto(tensor, pixels.transpose(0, 3, 1, 2), casting="unsafe")
        if self._gain_in != 1.0:  # the common 0..255 case needs no pass over the data
            tensor *= self._gain_in
        if self._low_in:
            tensor += self._low_in
        return Prepared(tensor, scale, chroma, dtype)

    # -- model space -> engine -> model space ---------------------------------------------------

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the engine is given for an H x W tensor: the static size, or the next multiple."""
        if self.static_size is not None:
            sh, sw = self.static_size
            if height > sh or width > sw:
                raise InputError(
                    f"{self.model_name} was exported with a static {sh}x{sw} input and cannot take {height}x{width} "
                    f"in one run: cut it into tiles of at most {sh}x{sw} (the Predictor does, with tile='auto' or "
                    "tile=N); smaller inputs are padded"
                )
            return sh, sw
        k = self.spec.multiple_of
        return -(-height // k) * k, -(-width // k) * k

    def feeds(self, tensor: np.ndarray, scale: int) -> dict[str, np.ndarray]:
        """The engine's feeds for one model-space tensor: padded, laid out and cast for the model."""
        _n, _c, height, width = tensor.shape
        ph, pw = (height, width) if self._any_size else self.padded_size(height, width)
        if (ph, pw) != (height, width):
            # Reflection keeps the padding image-like, so the model sees no false edge at the border.
            mode: Literal["reflect", "edge"] = "reflect" if height > 1 and width > 1 else "edge"
            tensor = np.pad(tensor, ((0, 0), (0, 0), (0, ph - height), (0, pw - width)), mode=mode)
        if self.spec.layout == "NHWC":
            tensor = np.ascontiguousarray(tensor.transpose(0, 2, 3, 1))
        if self.input_dtype != tensor.dtype:
            tensor = tensor.astype(self.input_dtype)
        feeds = {self.spec.image_input: tensor}
        if self.spec.scale_input is not None:  # a runtime-scale model
            feeds[self.spec.scale_input] = self.scale_feed(scale)
        return feeds

    def scale_feed(self, scale: int) -> np.ndarray:
        """A runtime-scale model's factor input for ``scale``: Resize's scales [1, 1, s, s]."""
        return np.array([1.0, 1.0, scale, scale], dtype=self.scale_dtype)

    def output(self, outputs, shape: tuple, scale: int) -> np.ndarray:
        """The engine's output for a model-space tensor of ``shape`` -> N x C x sH x sW float32."""
        out = outputs[self.output_name] if type(outputs) is dict or isinstance(outputs, Mapping) else outputs
        n, c, height, width = shape
        ph, pw = (height, width) if self._any_size else self.padded_size(height, width)
        if self.spec.layout == "NHWC" and out.ndim == 4:
            out = out.transpose(0, 3, 1, 2)
        expected = (n, c, ph * scale, pw * scale)
        if tuple(out.shape) != expected:
            hint = (
                " If the model needs H and W to be multiples of some k (window attention, U-Nets), declare "
                "multiple_of: pipeline={'multiple_of': 8} or `sdk annotate --multiple-of 8`."
                if self.spec.multiple_of == 1 and self.static_size is None
                else ""
            )
            raise ModelError(
                f"{self.model_name} returned a {tuple(out.shape)} tensor (as NCHW) for a {(n, c, ph, pw)} input "
                f"at scale {scale}; expected {expected}. A runtime-scale model that always returns one size has "
                f"its factor baked in: export it again with the factor as a real input.{hint}"
            )
        if (ph, pw) != (height, width):
            out = out[:, :, : height * scale, : width * scale]
        if out.dtype != _FLOAT32:
            out = out.astype(np.float32)
        return out

    def run_tensor(self, session, tensor: np.ndarray, scale: int, cancel=None) -> np.ndarray:
        """Run exactly this model-space tensor (no tiling inside) -> N x C x sH x sW float32; a
        :class:`sdk.CancelToken` as ``cancel`` may call the run off (``Session.run_cancellable``)."""
        feeds = self.feeds(tensor, scale)
        try:
            outputs = session.run(feeds) if cancel is None else session.run_cancellable(feeds, cancel)
        except Exception as exc:
            if (
                self.spec.multiple_of > 1
                or self.static_size is not None
                or (isinstance(exc, SDKError) and type(exc) not in (SDKError, InputError))
            ):
                raise
            height, width = tensor.shape[2:]
            raise InputError(
                f"{self.model_name} failed on a {height}x{width} input: {exc}. If it needs H and W to be "
                "multiples of some k (window attention, U-Nets), declare it: pipeline={'multiple_of': 8} or "
                f"`sdk annotate MODEL -o OUT.onnx --multiple-of 8` (the {PIPELINE_KEY!r} metadata)"
            ) from exc
        return self.output(outputs, tensor.shape, scale)

    # -- model space -> images ------------------------------------------------------------------

    def finish(self, out: np.ndarray, prepared: Prepared, bgr: bool = False) -> np.ndarray:
        """N x C x sH x sW float32 model output -> N x sH x sW x 3 pictures in the prepared batch's dtype,
        RGB (or BGR when asked).

        ``out`` is consumed: it may be overwritten (this saves a copy of the largest array).
        """
        if not out.flags.writeable:
            out = out.copy()
        if self._low_out:
            out -= self._low_out
        if self._gain_out != 1.0:
            out *= 1.0 / self._gain_out
        if self.spec.color == "y":
            chroma = cast(np.ndarray, prepared.chroma)  # prepare keeps it for a "y" model
            return _from_y_and_chroma(out, chroma, flip=bgr, dtype=prepared.dtype)
        if self.spec.color == "gray":
            return np.repeat(to_pixels_nhwc(out, dtype=prepared.dtype), 3, axis=3)  # three equal channels
        return to_pixels_nhwc(out, flip=(self.spec.color == "bgr") != bgr, dtype=prepared.dtype)


def _affine(value_range: tuple[float, float]) -> tuple[float, float]:
    low, high = value_range
    return (high - low) / 255.0, low


_ZERO, _WHITE = np.float32(0), np.float32(255)
# Adding 1.5 * 2**23 to a float32 in [0, 255] rounds it to the nearest integer, ties to even, exactly
# as np.rint does, and leaves that integer in the low byte of the sum's bits: the byte is the pixel.
# So one addition replaces rint, and the copies into the interleaved image move bytes instead of
# casting floats (about 15% less time on a 768x768 result than rint + a casting copy).
_ROUNDER = np.float32(1.5 * 2**23)
_LOW_BYTE = 0 if sys.byteorder == "little" else 3
_FLOAT32, _UINT8, _UINT16 = np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.uint16)
_TO_16_BITS = np.float32(65535 / 255)


def to_pixels_nhwc(
    tensor: np.ndarray, flip: bool = False, out: np.ndarray | None = None, dtype: np.dtype = _UINT8
) -> np.ndarray:
    """N x C x H x W float 0..255 -> N x H x W x C ``dtype`` pixels (uint8, or uint16 over 0..65535;
    into ``out`` when given), rounded to nearest (ties to even) and clipped. ``tensor`` is overwritten."""
    # The method, not np.clip: the function's Python wrappers cost 4 us a call, a fifth of the work on
    # a 32x32 image. Float32 bounds: Python ints would have their type resolved on every call.
    tensor.clip(_ZERO, _WHITE, out=tensor)
    n, c, height, width = tensor.shape
    images = np.empty((n, height, width, c), dtype=dtype) if out is None else out
    if images.dtype == _UINT16:
        tensor *= _TO_16_BITS
    bytewise = images.dtype == _UINT8 and tensor.dtype == _FLOAT32 and tensor.strides[-1] == 4
    if bytewise:
        np.add(tensor, _ROUNDER, out=tensor)
        planes = tensor.view(_UINT8)[..., _LOW_BYTE::4]
    else:  # no low bytes to pick (a transposed or float64 tensor): round, and cast while copying
        np.rint(tensor, out=tensor)
        planes = tensor
    for k in range(c):
        # A plane at a time (contiguous reads, strided writes) is about 3x faster than one 4-D
        # transposed copy (numpy 2.4): this is most of the SDK's own time on a call.
        target = images[..., c - 1 - k if flip else k]
        if bytewise:
            target[...] = planes[:, k]
        else:
            np.copyto(target, planes[:, k], casting="unsafe")
    return images


def _from_y_and_chroma(y: np.ndarray, chroma: np.ndarray, flip: bool = False, dtype: np.dtype = _UINT8) -> np.ndarray:
    """Model Y (N x 1 x sH x sW, 0..255) + low-res chroma (0..255) -> N x sH x sW x 3 RGB ``dtype`` pixels.

    Chroma is upscaled with PIL's bicubic filter, as the ESPCN tutorial does, so our output matches
    the reference pipeline's. One image at a time through buffers of one image: the working set stays
    in cache, and a batch gives exactly the pixels of single calls.
    """
    from PIL import Image

    n, _, height, width = y.shape
    images = np.empty((n, height, width, 3), dtype=dtype)
    ycbcr = np.empty((3, height * width), dtype=np.float32)
    rgb = np.empty((3, height * width), dtype=np.float32)
    for i in range(n):
        ycbcr[0] = y[i, 0].reshape(-1)
        for c in range(2):
            # Centred here, on the low-resolution plane (a ninth of the pixels at x3): the filter's
            # weights sum to one, so this equals centring the upscaled plane, to a float rounding.
            # The result is contiguous float32, as PIL's "F" mode reads it.
            plane = np.subtract(chroma[i, c], color.CHROMA_OFFSET, dtype=np.float32)
            low = Image.frombuffer("F", plane.shape[::-1], plane, "raw", "F", 0, 1)  # no copy
            high = low.resize((width, height), Image.Resampling.BICUBIC)
            # tobytes + frombuffer: one copy of the plane (np.asarray on the image makes two).
            ycbcr[c + 1] = np.frombuffer(high.tobytes(), dtype=np.float32)
        color.ycbcr_to_rgb(ycbcr, out=rgb, centred=True)
        to_pixels_nhwc(rgb.reshape(1, 3, height, width), flip, out=images[i : i + 1])
    return images
