"""Cutting an image into windows of one size, so that tiles of many requests stack into one batch.

sdk.tiling cuts a job into tiles for memory; the server also needs every window of every request to
have the same shape. Windows here never leave the image: the last one along an axis is shifted
inward (overlapping its neighbour) instead of being padded, so a window's border is the image's own
border wherever they meet and each kept centre has at least ``margin`` pixels of real context. An
image side shorter than the window is taken whole, so a small image is one window and runs exactly
as ``Predictor`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    start: int  # where the window starts
    keep_from: int  # the part of the axis whose result this window supplies
    keep_to: int


def spans(length: int, window: int, margin: int) -> list[Span]:
    if length <= window:
        return [Span(0, 0, length)]
    stride = window - 2 * margin
    starts = list(range(0, length - window, stride)) + [length - window]
    result, keep_from = [], 0
    for i, start in enumerate(starts):
        if i + 1 < len(starts):
            # Split the overlap with the next window in the middle: both sides keep >= margin context.
            keep_to = (starts[i + 1] + start + window) // 2
        else:
            keep_to = length
        result.append(Span(start, keep_from, keep_to))
        keep_from = keep_to
    return result


@dataclass(frozen=True)
class Window:
    top: Span
    left: Span


def plan(height: int, width: int, tile: int, margin: int) -> tuple[tuple[int, int], list[Window]]:
    """The window shape (h, w) and the windows covering an image of ``height`` x ``width``."""
    shape = (min(height, tile), min(width, tile))
    return shape, [Window(t, l) for t in spans(height, tile, margin) for l in spans(width, tile, margin)]
