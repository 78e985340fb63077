"""Running a large image as overlapping tiles, so memory stays bounded.

Tiling works at the image level: uint8 windows are cut from the picture, each runs through the whole
pipeline (pre-processing, engine, post-processing) and only the centre of its uint8 result is written
into the output. A 12-megapixel x3 job therefore never holds the 1.3 GB float output, only one
window's tensors.

Every window has the same size (windows at the edges are shifted inwards rather than cut short), so
windows run as one batch when the model has a dynamic batch axis and static-size models get exactly
their size. The margin of context around each centre comes from the model's receptive field,
derived from the graph (:func:`sdk.graph.reach.receptive_radius`); with it the stitched result equals the
whole-image run up to the float rounding of the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

from .errors import InputError
from .graph.reach import receptive_radius  # noqa: F401  (sdk.serve's; it moves to Predictor.plan)

if TYPE_CHECKING:
    from .cancel import CancelToken

# Input pixels of context when the graph has layers whose reach we cannot bound (attention,
# reshapes, global pooling): what the widely used tiling upscalers default to, and enough for
# ESRGAN-sized nets to agree within a grey level.
DEFAULT_MARGIN = 32
# Pixels added to a derived radius: the engine's rounding of sampling positions, and layers
# (Pad, asymmetric kernels) whose half-width we round down.
SAFETY = 2


class Plan(NamedTuple):
    """How a batch of images runs through the engine: what :meth:`sdk.Predictor.plan` returns.

    tiled: False: each image runs whole, ``window`` is its (h, w) and ``margin`` is 0. True: each
        image is cut into overlapping windows of ``window`` (h, w) input pixels (no larger than the
        image), each with ``margin`` pixels of context around the core it writes.
    batch: the most items (whole images, or windows) one engine call takes.
    exact: windows are padded up to ``window`` (a static-size model cannot take anything else).

    A named tuple rather than a frozen dataclass: every call makes one, and this is five times
    cheaper to build (a microsecond on the build machine, a few per cent of a small image's SDK work).
    """

    window: tuple[int, int]
    margin: int
    batch: int = 1
    exact: bool = False
    tiled: bool = True

    def count(self, height: int, width: int) -> int:  # type: ignore[override]  # not tuple.count: no caller counts fields
        """Windows (engine items) per H x W image."""
        return len(spans(height, self.window[0], self.margin)) * len(spans(width, self.window[1], self.margin))


def parse_tile(value: object, where: str = "tile=") -> int | str:
    """A tile option as the Predictor and the CLI take it: "auto" (or None), 0 (no tiling) or a size in
    input pixels, as a number or its text; an InputError naming ``where`` (e.g. "--tile ") otherwise."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = int(text)
        except ValueError:
            pass
    if not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 0:
        return int(value)
    raise InputError(
        f"{where}{value!r}: pass auto (the default), 0 (no tiling) or a tile size in input pixels, e.g. 512"
    )


def spans(length: int, window: int, margin: int) -> list[tuple[int, int, int]]:
    """(core start, core end, window start) along one axis.

    Cores tile [0, length) without overlap; each window is ``window`` long (or the whole axis when
    shorter), starts ``margin`` before its core where it can, and is shifted inwards at the edges, so
    every core has at least ``margin`` pixels of real context on each side that is not an image edge.
    The edge cores need no context on their outer side (the image edge is there), so they are
    ``margin`` longer than the others: margins are paid only between windows.
    """
    if length <= window:
        return [(0, length, 0)]
    step = window - 2 * margin
    if step < 1:
        raise InputError(
            f"tiles of {window} pixels leave nothing inside a margin of {margin}; use tiles larger than {2 * margin}"
        )
    out = [(0, window - margin, 0)]
    while out[-1][1] < length:
        start = out[-1][1]
        end = length if length - start <= window - margin else start + step
        out.append((start, end, min(start - margin, length - window)))
    return out


def upscale_tiled(
    images: np.ndarray,
    scale: int,
    plan: Plan,
    run_windows: Callable[[np.ndarray], np.ndarray],
    progress: Callable[[int, int], object] | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """N x H x W x 3 pixels -> N x sH x sW x 3 pixels of the same dtype (uint8 or uint16), through
    ``run_windows`` (k x h x w x 3 -> k x sh x sw x 3) on windows of ``plan.window``; a ``cancel``
    token called off stops it before the next batch of windows (:class:`sdk.Cancelled`)."""
    n, height, width, channels = images.shape
    out = np.empty((n, height * scale, width * scale, channels), dtype=images.dtype)
    rows = spans(height, plan.window[0], plan.margin)
    cols = spans(width, plan.window[1], plan.margin)
    jobs = [(i, row, col) for i in range(n) for row in rows for col in cols]
    win_h, win_w = min(plan.window[0], height), min(plan.window[1], width)
    pad_h = plan.window[0] - win_h if plan.exact else 0
    pad_w = plan.window[1] - win_w if plan.exact else 0
    done = 0
    for first in range(0, len(jobs), max(1, plan.batch)):
        if cancel is not None:
            cancel.check()
        chunk = jobs[first : first + max(1, plan.batch)]
        windows = np.stack([images[i, r[2] : r[2] + win_h, c[2] : c[2] + win_w] for i, r, c in chunk])
        if pad_h or pad_w:
            windows = _pad(windows, pad_h, pad_w)
        results = run_windows(windows)
        for (i, (y0, y1, wy), (x0, x1, wx)), result in zip(chunk, results):
            dy, dx = (y0 - wy) * scale, (x0 - wx) * scale
            out[i, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[
                dy : dy + (y1 - y0) * scale, dx : dx + (x1 - x0) * scale
            ]
        done += len(chunk)
        if progress is not None:
            progress(done, len(jobs))
    return out


def _pad(windows: np.ndarray, pad_h: int, pad_w: int) -> np.ndarray:
    """Pad at the bottom and right by mirroring, as a static-size model's exporter would have cropped."""
    mode: Literal["reflect", "edge"] = "reflect" if min(windows.shape[1:3]) > 1 else "edge"
    return np.pad(windows, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode=mode)


# -- the margin of context, from the receptive field ------------------------------------------------


def margin_for(radius: float | None) -> int:
    """Input pixels of context per tile side for a receptive radius (None: not derivable)."""
    if radius is None:
        return DEFAULT_MARGIN
    return int(math.ceil(radius)) + SAFETY
