"""Image arithmetic shared by training, the quality benchmark and the demo (numpy and PIL only)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..color import RGB_TO_YCBCR


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so both sides divide by ``scale`` (the benchmark protocol's HR image)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bicubic resize of an HxWx3 uint8 image to ``size`` = (width, height).

    PIL widens the kernel when shrinking (antialiasing), like MATLAB's imresize that produced the
    published low-resolution inputs; its kernel is Keys' with a = -0.5.
    """
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return bicubic_resize(image, (w // scale, h // scale))


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return bicubic_resize(image, (w * scale, h * scale))


def luma_bt601(image: np.ndarray) -> np.ndarray:
    """Studio-range BT.601 Y (16..235) of an HxWx3 RGB uint8 image, as MATLAB's rgb2ycbcr.

    This is the channel the SRCNN paper and its successors report PSNR on.
    """
    # Studio range squeezes the full-range luma (0..255) into 16..235: MATLAB's 65.481 = 219 x 0.299.
    return 16.0 + image.astype(np.float64) @ (RGB_TO_YCBCR[0].astype(np.float64) * (219.0 / 255.0))


def psnr_y(reference: np.ndarray, estimate: np.ndarray, border: int) -> float:
    """Y-channel PSNR in dB between two RGB uint8 images, ``border`` pixels cropped on each side."""
    if reference.shape != estimate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {estimate.shape}")
    a, b = luma_bt601(reference), luma_bt601(estimate)
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
