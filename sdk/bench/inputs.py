"""The pictures every row is fed: real photographs that scikit-image installs with itself.

Noise would be the wrong input: it makes the convolutions' outputs cluster near zero and clip, which
hides accuracy differences, and no user upscales noise.
"""

from __future__ import annotations

import numpy as np

from ..errors import SDKError

# The first one alone serves batch 1; a batch cycles through them so its images differ.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError as exc:
        raise SDKError(f"the benchmark's photos come from scikit-image ({exc}): pip install scikit-image") from exc
    image = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then resize to ``size`` x ``size`` (PIL bicubic, antialiased)."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC))


def benchmark_images(size: int, count: int) -> list[np.ndarray]:
    """``count`` HxWx3 uint8 RGB photos of ``size`` x ``size``."""
    return [_square(_photo(PHOTOS[i % len(PHOTOS)]), size) for i in range(count)]
