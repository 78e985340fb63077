"""Colour facts, written once: the colours a model can take, their channel counts, and BT.601.

The runtime pipeline and the training code (sdk.zoo) both convert through these functions, so a
model is fed at run time exactly what it was trained on.
"""

from __future__ import annotations

import numpy as np

# The colour of a model's image tensor -> its channel count.
#   rgb, bgr: the three colour channels in that order.
#   y:    the luma of full-range BT.601 YCbCr only; Cb and Cr are upscaled bicubically outside the
#         model and merged back (the ESPCN tutorial's scheme), so the result keeps its colour.
#   gray: a grayscale network: it sees the same luma, and what it returns is the whole picture
#         (a gray image, three equal channels).
CHANNELS = {"rgb": 3, "bgr": 3, "y": 1, "gray": 1}
COLORS = tuple(CHANNELS)

# Full-range BT.601 (JFIF): what PIL's "YCbCr" mode uses and the ESPCN tutorial trains on. Its first
# row is also PIL's "L" conversion (ITU-R 601-2 luma).
RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR.astype(np.float64)).astype(np.float32)
CHROMA_OFFSET = 128.0  # Cb and Cr are stored centred on 128


def channels(color: str) -> int:
    return CHANNELS[color]


def luma(rgb: np.ndarray) -> np.ndarray:
    """... x 3 RGB (any numeric dtype, 0..255) -> ... float32 full-range Y (0..255)."""
    return rgb.astype(np.float32, copy=False) @ RGB_TO_YCBCR[0]


def rgb_to_ycbcr(batch: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 RGB -> N x 3 x H x W float32 Y, Cb, Cr in 0..255 (chroma centred on 128)."""
    ycbcr = np.einsum("ij,nhwj->nihw", RGB_TO_YCBCR, batch.astype(np.float32), optimize=True)
    ycbcr[:, 1:] += CHROMA_OFFSET
    return ycbcr


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """N x 3 x H x W float Y, Cb, Cr (0..255, chroma centred on 128) -> N x 3 x H x W float RGB.

    ``ycbcr``'s chroma planes are shifted in place.
    """
    ycbcr[:, 1:] -= CHROMA_OFFSET
    return np.einsum("ij,njhw->nihw", YCBCR_TO_RGB, ycbcr, optimize=True)
