"""What one request may ask the server to do, checked before any work: the scale, the result's
pixels, its memory (through :meth:`sdk.Predictor.plan`, the one planner), and a raw /v2 request's
tensors and runtime factor.

Each rule is cheap (arithmetic on header sizes and shapes) and runs before decoding, before a
place in the engine's queue is used and before any engine call: a hostile value costs the server
microseconds, not seconds of engine time nor a new entry in the optimised-model cache.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import InputError, TooLargeError
from ..tiling import Plan
from .errors import bad_request, too_large, unprocessable

# A runtime-scale model's file does not say what it was trained for. Super-resolution nets are trained
# at x2 to x4 (srcnn3 at 2, 3 and 4); twice the largest still gives a picture, and each factor above
# it costs the optimised-model cache a larger rewrite (its polyphase weights grow with the square).
RUNTIME_MAX_SCALE = 8
_WHOLE = re.compile(r"\s*\+?[0-9]{1,6}(\.0*)?\s*")


class Limits:
    """The per-request checks of one server (its settings and its model)."""

    def __init__(self, predictor, settings):
        self.predictor = predictor
        self.settings = settings
        fixed = predictor.pipeline.spec.scale
        self.max_scale = settings.max_scale or (fixed if fixed is not None else RUNTIME_MAX_SCALE)
        if fixed is not None and self.max_scale < fixed:
            raise InputError(f"max_scale={self.max_scale} is below the model's own scale {fixed}; raise --max-scale")

    # -- the scale --------------------------------------------------------------------------------------

    def scale(self, value) -> int:
        """The scale a request asked for (query text, a JSON value or None), checked against the model
        and --max-scale; a 422 that says what to send otherwise."""
        if isinstance(value, str):
            if not _WHOLE.fullmatch(value):
                raise unprocessable(f"scale={value[:32]!r} is not a whole number: send one such as 2, 3 or 4")
            value = int(float(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise unprocessable(f"scale={value} is not a whole number: send one such as 2, 3 or 4")
        try:
            scale = self.predictor.pipeline.check_scale(value)
        except (InputError, OverflowError, ValueError) as exc:
            message = str(exc) if isinstance(exc, InputError) else f"scale={value!r} is not a whole number"
            raise unprocessable(message) from None
        if scale > self.max_scale:
            raise unprocessable(
                f"scale={scale} is more than this server allows (--max-scale {self.max_scale}); send 1 to {self.max_scale}"
            )
        return scale

    # -- an image's result ---------------------------------------------------------------------------

    def image(self, height: int, width: int, scale: int, count: int = 1, held: int = 0) -> Plan:
        """How ``count`` images of height x width run at ``scale`` (sdk.Predictor.plan with --tile windows
        and --max-batch), or a 413 unless they fit --max-pixels and memory (the plan's rule: the result
        must fit in free memory; ``held`` bytes the request keeps besides (coding.held_bytes), the
        stitched result and one engine call within the budget)."""
        out_pixels = height * width * scale * scale
        if out_pixels > self.settings.max_pixels:
            raise too_large(
                f"the result would be {width * scale}x{height * scale} = {out_pixels} pixels; this server gives at "
                f"most {self.settings.max_pixels} (--max-pixels); send a smaller image or a smaller scale"
            )
        try:
            return self.predictor.plan(
                (height, width), scale, self.settings.tile, count=count, max_batch=self.settings.max_batch, held=held
            )
        except TooLargeError as exc:
            raise too_large(str(exc)) from None

    # -- raw tensors (/v2 without images) ----------------------------------------------------------

    def raw_feeds(self, feeds: dict[str, np.ndarray], held: int = 0) -> None:
        """Before the engine runs raw tensors: no empty axis, a runtime factor the pipeline itself
        would send (finite, whole, 1..--max-scale), and a whole run that fits --max-pixels and the
        memory budget (raw tensors cannot be cut into windows) beside the ``held`` bytes of the request
        (its body) and the feeds themselves."""
        for name, value in feeds.items():
            if value.size == 0:
                raise bad_request(f"input {name!r} has shape {list(value.shape)}: every axis needs at least 1 element")
        pipeline = self.predictor.pipeline
        spec = pipeline.spec
        scale = spec.scale
        if spec.scale_input is not None and spec.scale_input in feeds:
            scale = self.factor(feeds[spec.scale_input])
        image = feeds.get(spec.image_input)
        if image is None or image.ndim != 4 or scale is None:
            return
        n, height, width = (
            (image.shape[0], *image.shape[1:3]) if spec.layout == "NHWC" else (image.shape[0], *image.shape[2:])
        )
        held += sum(value.nbytes for value in feeds.values())
        self.image(height, width, scale, n, held)
        try:
            plan = self.predictor.plan((height, width), scale, "auto", count=n, held=held)
        except TooLargeError as exc:
            raise too_large(str(exc)) from None
        if plan.tiled and not plan.exact:
            raise too_large(
                f"{n} x {height}x{width} at x{scale} needs more memory than this server's budget to run in one piece, "
                "and raw tensors cannot be cut into windows: send fewer or smaller tensors, or the picture as an "
                "encoded image (a BYTES input), which runs in windows"
            )

    def factor(self, value: np.ndarray) -> int:
        """The scale a raw runtime factor stands for: exactly what the pipeline sends for a whole scale
        from 1 to --max-scale ([1, 1, s, s]), else a 422. So no engine runs on, and no optimised-model
        cache entry is made for, a factor a client invented."""
        name = self.predictor.pipeline.spec.scale_input
        values = np.asarray(value, dtype=np.float64).ravel()
        last = float(values[-1]) if values.size else math.nan
        whole = math.isfinite(last) and last.is_integer() and 1 <= last <= self.max_scale
        expected = self.predictor.pipeline.scale_feed(int(last)) if whole else None
        if expected is None or expected.shape != value.shape or not np.array_equal(expected, value):
            shown = [float(v) for v in values[:8]]
            raise unprocessable(
                f"input {name!r} is {shown}; it must be [1, 1, s, s] with s a whole number from 1 to "
                f"{self.max_scale} (--max-scale)"
            )
        return int(last)
