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
    n, height, width, _ = batch.shape
    pixels = batch.reshape(n, height * width, 3).astype(np.float32)
    ycbcr = np.empty((n, 3, height * width), dtype=np.float32)
    for image, planes in zip(pixels, ycbcr):
        _times(RGB_TO_YCBCR, image.T, planes)  # the interleaved pixels as a transposed operand, read in place
    ycbcr[:, 1:] += CHROMA_OFFSET
    return ycbcr.reshape(n, 3, height, width)


def ycbcr_to_rgb(planes: np.ndarray, out: np.ndarray | None = None, centred: bool = False) -> np.ndarray:
    """3 x P float32 Y, Cb, Cr planes of one image (0..255, chroma centred on 128, or on 0 when
    ``centred``) -> 3 x P float32 R, G, B (into ``out`` when given). ``planes``' chroma is shifted in
    place."""
    if not centred:
        planes[1:] -= CHROMA_OFFSET
    return _times(YCBCR_TO_RGB, planes, np.empty_like(planes) if out is None else out)


# Pixels per matrix product. Below about 29000 pixels (3 x 3 x P < 2**18) OpenBLAS runs a product on
# the calling thread; above, its threaded path took 8 ms (planes) to 68 ms (interleaved pixels) on
# a 768x768 image, against 0.8 and 1.5 ms in blocks (np.einsum's batched path: 10 ms). A block's
# operands also stay in cache.
_BLOCK = 16384


def _times(matrix: np.ndarray, planes: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` (K x P) = ``matrix`` (K x 3) @ ``planes`` (3 x P), a block of pixels at a time. Every
    pixel is computed the same way whatever the image's size, so a batch equals single calls."""
    for start in range(0, planes.shape[1], _BLOCK):
        np.matmul(matrix, planes[:, start : start + _BLOCK], out=out[:, start : start + _BLOCK])
    return out
