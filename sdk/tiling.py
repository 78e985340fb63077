"""Running a large image as overlapping tiles, so memory stays bounded.

Each tile is cut with a margin of context and only its centre is kept, so the stitched result equals
the whole-image result wherever the margin covers the model's receptive field (SRCNN needs 6 output
pixels plus the bicubic kernel's 2 input pixels; ESPCN needs 5 input pixels).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .errors import InputError

DEFAULT_MARGIN = 16  # input pixels of context around each tile


def run_tiled(
    run: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    feeds: Mapping[str, np.ndarray],
    image_input: str,
    output_name: str,
    scale: int,
    tile: int,
    margin: int = DEFAULT_MARGIN,
) -> dict[str, np.ndarray]:
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise InputError(f"tile={tile!r} must be a positive whole number of input pixels, e.g. 256")
    image = feeds[image_input]
    n, _, height, width = image.shape
    result = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, bottom + margin), min(width, right + margin)
            window = np.ascontiguousarray(image[:, :, y0:y1, x0:x1])
            part = run({**feeds, image_input: window})[output_name]
            if result is None:
                result = np.empty((n, part.shape[1], height * scale, width * scale), dtype=part.dtype)
            dy, dx = (top - y0) * scale, (left - x0) * scale
            h, w = (bottom - top) * scale, (right - left) * scale
            result[:, :, top * scale:bottom * scale, left * scale:right * scale] = part[:, :, dy:dy + h, dx:dx + w]
    return {output_name: result}
