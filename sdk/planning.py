"""Planning a run: how images of one size go through the engine, decided before any engine call.

Every rule that decides how a model runs lives here, once: whether the result fits in memory, whether
the images run whole or as overlapping windows, the windows' size, their margin of context (which,
for a runtime-scale model, depends on the scale), the margin a small static tile can afford, and how
many images or windows go to the engine at once. :meth:`sdk.Predictor.plan` is its public face; the
Predictor's own calls, folder jobs, Ray actors, the server and the video pipeline all ask it, so a
rule changed here changes for all of them.
"""

from __future__ import annotations

import math

from . import memory, tiling
from .errors import InputError, TooLargeError
from .footprint import PROBE, Footprint, footprint
from .graph.reach import receptive_radius
from .tiling import Plan

# Bounds on how many windows (or whole images) go to the engine at once: uint8 windows are small, but
# this keeps the batch's float tensors within the budget's estimate.
MAX_BATCH = 16
# Scales whose footprint and margin are kept per Predictor: scales are few in practice, and a flood of
# them must not grow the cache without bound.
SCALES_KEPT = 64
_ALIGN = 16  # window sides are rounded down to this, so engines see few distinct shapes


class Planner:
    """The planning rules for one model on one device, with its per-scale sizes derived once.

    ``budget`` is the Predictor's memory_budget in bytes (None: the default, asked on every plan so
    that $SDK_MEMORY_BUDGET and the free memory are current). Stateless but for that cache, so one
    Planner serves every thread.
    """

    def __init__(self, model, spec, static_size, device: str, budget: int | None, dynamic_batch: bool):
        self.model = model
        self.spec = spec
        self.static_size = static_size
        self.device = device
        self.budget = budget
        self.dynamic_batch = dynamic_batch
        # scale -> (footprint, tile margin): both depend on the scale only and are derived from the
        # graph, so a call looks them up instead of deriving or even keying them on the file again.
        self._sizing: dict[int, tuple[Footprint, int]] = {}

    def sizing(self, scale: int) -> tuple[Footprint, int]:
        """The footprint and tile margin at ``scale``, derived once (a benign race: two threads may
        both derive the same values)."""
        found = self._sizing.get(scale)
        if found is not None:
            return found
        k = self.spec.multiple_of
        probe = self.static_size or (-(-PROBE // k) * k,) * 2  # a size the model can really take
        radius = receptive_radius(self.model.proto, self.spec.image_input, scale)
        found = (footprint(self.model, self.spec, scale, probe), tiling.margin_for(radius))
        if len(self._sizing) >= SCALES_KEPT:
            self._sizing.clear()
        self._sizing[scale] = found
        return found

    def plan(
        self,
        shape: tuple[int, int, int],
        scale: int,
        tile,
        max_batch: int = MAX_BATCH,
        max_batch_pixels: int | None = None,
        held: int = 0,
    ) -> Plan:
        """The plan for ``shape`` = (N, H, W) images at ``scale``; arguments already checked (see
        :meth:`sdk.Predictor.plan`). Raises TooLargeError for what cannot fit, before any engine call.

        The budget bounds the whole call: ``held`` bytes the caller keeps for it (the server: the
        request's body, its decoded pixels, the encoded answer), the result that windows are stitched
        into, and one engine call's footprint."""
        n, height, width = shape
        room = memory.available()
        check_result_fits(n, height, width, scale, room)
        found, margin = self._sizing.get(scale) or self.sizing(scale)
        budget = memory.budget(self.budget, self.device) - held
        static = self.static_size
        if tile == "auto" and static is None and found.peak(n, height, width) <= budget:
            # The common case, decided first: this runs on every call. (A whole run's result is the
            # footprint's: post-processing writes it.)
            return self._whole(n, height, width, found, budget, max_batch, max_batch_pixels)
        if tile == 0 and found.derived and found.peak(n, height, width) > room:
            raise TooLargeError(
                f"running {width}x{height} at x{scale} in one piece needs about "
                f"{memory.gib(found.peak(n, height, width))}, more than the {memory.gib(room)} available; "
                "use tile='auto' (the default) or a tile size"
            )
        if static is not None:
            window = (int(static[0]), int(static[1]))
            if (height, width) == window and n == 1:
                return self._whole(n, height, width, found, budget, max_batch, max_batch_pixels)
        elif tile == 0:
            return self._whole(n, height, width, found, budget, max_batch, max_batch_pixels)
        # Windows: the result they are stitched into is held beside them for the whole call.
        result = result_bytes(n, height, width, scale)
        budget -= result
        taken = held + result
        if static is not None:
            if min(window) <= 2 * margin:
                margin = max(0, (min(window) - 1) // 4)  # a small static tile: keep half of it as core
            batch = self._batch(found, budget, window[0] * window[1], max_batch, max_batch_pixels)
            return Plan(window, margin, batch, exact=True)
        align = max(_ALIGN, self.spec.multiple_of)
        if tile == "auto":
            largest = _auto_window(found, budget, height, width, margin, align, taken)
            # Split each axis evenly: fixed-size windows shifted inwards at the edges would otherwise
            # overlap their neighbours by up to a whole window (59% extra work on a 1024x768 picture).
            k = self.spec.multiple_of
            window = (_even(height, largest[0], margin, k), _even(width, largest[1], margin, k))
        else:
            window = (tile + 2 * margin, tile + 2 * margin)
            if found.peak(1, min(window[0], height), min(window[1], width)) > budget:
                # A window the budget cannot hold shrinks to the largest square one it can: the
                # server's --tile is a size for sharing engine calls, not a licence to exceed memory.
                side = min(_auto_window(found, budget, window[0], window[1], margin, align, taken))
                window = (side, side)
        if window[0] >= height and window[1] >= width:
            return self._whole(n, height, width, found, budget, max_batch, max_batch_pixels)  # one window: the image
        # Windows are cut no larger than the image (see tiling.upscale_tiled): size the batch on those.
        cut = min(window[0], height) * min(window[1], width)
        return Plan(window, margin, self._batch(found, budget, cut, max_batch, max_batch_pixels))

    def _whole(self, n, height, width, found, budget, max_batch, max_batch_pixels) -> Plan:
        """Each image runs whole: as many of them per engine call as fit (the caller's N at least)."""
        batch = self._batch(found, budget, height * width, max_batch, max_batch_pixels)
        return Plan((height, width), 0, n if n > batch and self.dynamic_batch else batch, False, False)

    def _batch(self, found: Footprint, budget: int, pixels: int, max_batch: int, max_batch_pixels) -> int:
        """Items of ``pixels`` input pixels each per engine call: what the budget holds, at most
        ``max_batch`` and ``max_batch_pixels``; 1 for a model without a dynamic batch axis."""
        if not self.dynamic_batch:
            return 1
        pixels = pixels or 1
        fits = found.pixels_within(budget) // pixels
        if max_batch_pixels is not None:
            fits = min(fits, max_batch_pixels // pixels)
        return max(1, min(max_batch, fits))


def result_bytes(n: int, height: int, width: int, scale: int) -> int:
    """The uint8 result of N x H x W images at ``scale``."""
    return n * height * scale * width * scale * 3


def check_result_fits(n: int, height: int, width: int, scale: int, room: int | None = None) -> None:
    """TooLargeError unless the uint8 result of N x H x W images at ``scale`` fits in free memory."""
    out_bytes = result_bytes(n, height, width, scale)
    room = memory.available() if room is None else room
    if out_bytes > room:
        raise TooLargeError(
            f"the result would be {width * scale}x{height * scale} pixels ({memory.gib(out_bytes)} as uint8) for "
            f"{n} image(s), more than the {memory.gib(room)} of memory available; use a smaller scale or image"
        )


def check_size(size) -> tuple[int, int]:
    """(height, width) as :meth:`sdk.Predictor.plan` takes it, or an InputError."""
    try:
        height, width = size
        if any(isinstance(d, bool) or int(d) != d or d < 1 for d in (height, width)):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(
            f"size={size!r}: pass (height, width) in input pixels, e.g. image.shape[:2]; N images of one size "
            "run together with count=N"
        ) from None
    return int(height), int(width)


def _auto_window(
    found: Footprint, budget: int, height: int, width: int, margin: int, align: int, taken: int
) -> tuple[int, int]:
    """The largest window ``budget`` bytes hold (``taken`` more are the call's own: its result, what
    the caller holds), or a TooLargeError that says what to raise."""
    pixels = found.pixels_within(budget)
    smallest = 2 * margin + max(2 * margin, align)
    if pixels < smallest * smallest:
        also = f" once the result and the request take {memory.gib(taken)} of it" if taken else ""
        raise TooLargeError(
            f"the memory budget ({memory.gib(budget + taken)}) is too small for even one {smallest}x{smallest} tile of "
            f"this model (about {memory.gib(found.peak(1, smallest, smallest))}){also}; raise memory_budget= / "
            "--memory-budget / $SDK_MEMORY_BUDGET, or send a smaller image or scale"
        )
    side = max(smallest, math.isqrt(pixels) // align * align)
    # A long thin picture gets long thin windows: the budget is pixels, not a square.
    win_h = min(height, side)
    win_w = min(width, max(smallest, (pixels // max(1, win_h)) // align * align))
    if win_w >= width and win_h < height:
        win_h = min(height, max(smallest, (pixels // width) // align * align))
    return win_h, win_w


def _even(length: int, largest: int, margin: int, align: int) -> int:
    """The smallest window (a multiple of ``align``, at most ``largest``) that covers ``length`` in as
    few windows as ``largest`` would: the cores then share the axis evenly. ``count`` windows of size
    W cover count * W - 2 * margin * (count - 1) pixels, since the two edge windows need a margin on
    their inner side only (see :func:`sdk.tiling.spans`)."""
    if length <= largest:
        return length
    count = max(2, math.ceil((length - 2 * margin) / max(1, largest - 2 * margin)))
    while True:  # ends: the window shrinks towards 2 * margin + 1, and largest is more than that
        window = -(-math.ceil((length + 2 * margin * (count - 1)) / count) // align) * align
        if window <= largest:
            return window
        count += 1
