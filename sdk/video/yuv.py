"""YCbCr planes <-> RGB pixels, exactly as a stream's colorimetry says, at its own bit depth.

Written here rather than left to swscale: its YUV -> RGB -> YUV round trip of 10-bit video is off by
3 to 4 code values (measured with the wheel's FFmpeg 8 and its most accurate flags), and it cannot be
told where the chroma samples sit. Here every step is float32:

- decode: chroma planes are interpolated linearly to the luma grid, from where the stream says its
  chroma samples sit (left, centre, top-left ...); the matrix and range then give RGB, rounded to
  8 bits for an 8-bit source and to 16 bits (uint16, 0..65535) for a deeper one;
- encode: the inverse matrix, then chroma filtered down with the tent filter centred on the same
  sites (the adjoint of the interpolation), then rounded to the output's bit depth.

Pixels go through the 3x3 products a block at a time, as sdk.color does: the operands stay in cache.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from .colorimetry import SITINGS, Colorimetry

_BLOCK = 16384


def rgb_depth(depth: int) -> int:
    """The RGB bit depth for a source of ``depth`` bits: 8 stays 8, anything deeper travels as 16."""
    return 8 if depth <= 8 else 16


def _storage(bits: int) -> np.dtype:
    return np.dtype(np.uint8 if bits <= 8 else np.uint16)


def _levels(colorimetry: Colorimetry, depth: int) -> tuple[float, float, float, float]:
    """(luma offset, luma span, chroma offset, chroma span) in code values of ``depth`` bits."""
    if colorimetry.full_range:
        top = float(2**depth - 1)
        return 0.0, top, float(2 ** (depth - 1)), top
    step = float(2 ** (depth - 8))
    return 16 * step, 219 * step, 128 * step, 224 * step


def _rgb_to_ypbpr(colorimetry: Colorimetry) -> np.ndarray:
    kr, kb = colorimetry.luma_weights
    kg = 1.0 - kr - kb
    return np.array(
        [
            [kr, kg, kb],
            [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
            [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))],
        ]
    )


def to_rgb(
    y: np.ndarray, cb: np.ndarray | None, cr: np.ndarray | None, colorimetry: Colorimetry, depth: int
) -> np.ndarray:
    """Y (H x W) and Cb, Cr (subsampled or not; None for a grey picture) of ``depth`` bits ->
    H x W x 3 RGB, uint8 for 8-bit sources, uint16 (full 16-bit scale) for deeper ones."""
    height, width = y.shape
    out_bits = rgb_depth(depth)
    top = float(2**out_bits - 1)
    y_off, y_span, c_off, c_span = _levels(colorimetry, depth)
    to_rgb_matrix = np.linalg.inv(_rgb_to_ypbpr(colorimetry))
    planes = np.empty((3, height, width), dtype=np.float32)
    np.multiply(y, np.float32(top / y_span), out=planes[0], casting="unsafe")
    planes[0] -= np.float32(top * y_off / y_span)
    if cb is None:
        planes[1:] = 0.0
    else:
        siting = SITINGS[colorimetry.chroma_location]
        for plane, chroma in zip(planes[1:], (cb, cast(np.ndarray, cr))):  # Cr comes with Cb
            centred = np.subtract(chroma, np.float32(c_off), dtype=np.float32)
            centred *= np.float32(top / c_span)
            plane[...] = upsample(centred, height, width, siting)
    flat = planes.reshape(3, -1)
    rgb = np.empty_like(flat)
    matrix = to_rgb_matrix.astype(np.float32)
    for start in range(0, flat.shape[1], _BLOCK):
        np.matmul(matrix, flat[:, start : start + _BLOCK], out=rgb[:, start : start + _BLOCK])
    return _interleave(rgb.reshape(3, height, width), top, _storage(out_bits))


def from_rgb(
    rgb: np.ndarray, colorimetry: Colorimetry, depth: int, subsampling: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """H x W x 3 RGB (uint8 0..255 or uint16 0..65535) -> Y, Cb, Cr planes of ``depth`` bits.

    subsampling: the chroma planes' (horizontal, vertical) factors, (2, 2) for 4:2:0, (1, 1) for
    4:4:4; None for a grey output (Y only).
    """
    height, width, _ = rgb.shape
    top_in = float(np.iinfo(rgb.dtype).max)
    y_off, y_span, c_off, c_span = _levels(colorimetry, depth)
    scales = np.array([y_span, c_span, c_span])[:, None] / top_in
    matrix = (_rgb_to_ypbpr(colorimetry) * scales).astype(np.float32)
    pixels = rgb.reshape(-1, 3)
    ycc: np.ndarray = np.empty((3, pixels.shape[0]), dtype=np.float32)
    block = np.empty((3, _BLOCK), dtype=np.float32)
    for start in range(0, pixels.shape[0], _BLOCK):
        chunk = pixels[start : start + _BLOCK]
        part = block[:, : len(chunk)]
        np.copyto(part, chunk.T, casting="unsafe")
        np.matmul(matrix, part, out=ycc[:, start : start + len(chunk)])
    ycc = ycc.reshape(3, height, width)
    dtype, top = _storage(depth), float(2**depth - 1)
    y = _quantize(ycc[0], y_off, top, dtype)
    if subsampling is None:
        return y, None, None
    siting = SITINGS[colorimetry.chroma_location]
    cb, cr = (_quantize(downsample(plane, subsampling, siting), c_off, top, dtype) for plane in ycc[1:])
    return y, cb, cr


def _quantize(plane: np.ndarray, offset: float, top: float, dtype: np.dtype) -> np.ndarray:
    plane += np.float32(offset)
    np.rint(plane, out=plane)
    plane.clip(np.float32(0), np.float32(top), out=plane)
    return plane.astype(dtype)


def _interleave(planes: np.ndarray, top: float, dtype: np.dtype) -> np.ndarray:
    """3 x H x W float -> H x W x 3 integers, rounded to nearest and clipped (``planes`` is overwritten)."""
    np.rint(planes, out=planes)
    planes.clip(np.float32(0), np.float32(top), out=planes)
    out = np.empty((*planes.shape[1:], 3), dtype=dtype)
    for k in range(3):  # a plane at a time: contiguous reads (see sdk.pipeline)
        np.copyto(out[..., k], planes[k], casting="unsafe")
    return out


# -- chroma resampling -------------------------------------------------------------------------------


def upsample(chroma: np.ndarray, height: int, width: int, siting: tuple[float, float]) -> np.ndarray:
    """A chroma plane (float32) interpolated linearly to H x W from where its samples sit."""
    fy = -(-height // chroma.shape[0])
    fx = -(-width // chroma.shape[1])
    wide = _interpolate(chroma, 1, fx, siting[0] * (fx - 1), width)
    return _interpolate(wide, 0, fy, siting[1] * (fy - 1), height)


def _at(axis: int, index) -> tuple:
    return (index, slice(None)) if axis == 0 else (slice(None), index)


def _interpolate(plane: np.ndarray, axis: int, factor: int, offset: float, length: int) -> np.ndarray:
    """Along ``axis``: luma sample x sits at chroma coordinate (x - offset) / factor; the two chroma
    samples around it are mixed linearly (past an edge, the line through the edge samples goes on)."""
    if factor == 1:
        return plane
    count = plane.shape[axis]
    # The plane shifted by one sample each way: slices, not gathers, which are several times slower
    # along rows. Past an edge the line through the last two samples goes on (see _beyond).
    before = np.concatenate([_beyond(plane, axis, -1), plane[_at(axis, slice(0, count - 1))]], axis=axis)
    after = np.concatenate([plane[_at(axis, slice(1, count))], _beyond(plane, axis, count)], axis=axis)
    shifted = {-1: before, 0: plane, 1: after}
    shape = list(plane.shape)
    shape[axis] = count * factor
    out = np.empty(shape, dtype=np.float32)
    for phase in range(factor):
        position = (phase - offset) / factor
        low = int(np.floor(position))
        weight = np.float32(position - low)
        target = out[_at(axis, slice(phase, None, factor))]
        if weight:
            np.multiply(shifted[low], 1 - weight, out=target)
            target += shifted[low + 1] * weight
        else:
            target[...] = shifted[low]
    return out[_at(axis, slice(0, length))]


def downsample(plane: np.ndarray, subsampling: tuple[int, int], siting: tuple[float, float]) -> np.ndarray:
    """A full-resolution chroma plane filtered down by (fx, fy) onto the chroma sites."""
    fx, fy = subsampling
    tall = _filter(plane, 0, fy, siting[1] * (fy - 1))
    return _filter(tall, 1, fx, siting[0] * (fx - 1))


def _filter(plane: np.ndarray, axis: int, factor: int, offset: float) -> np.ndarray:
    """Chroma sample k (at luma position factor * k + offset) = the tent-weighted mean of the luma-grid
    samples within ``factor`` of it: the adjoint of :func:`_interpolate` (and the same edges)."""
    if factor == 1:
        return plane
    length = plane.shape[axis]
    count = -(-length // factor)
    shape = list(plane.shape)
    shape[axis] = count
    out = np.zeros(shape, dtype=np.float32)
    for tap in range(int(np.floor(offset - factor)) + 1, int(np.ceil(offset + factor))):
        weight = np.float32((1.0 - abs(tap - offset) / factor) / factor)
        if weight <= 0:
            continue
        first = max(0, -(tap // factor))  # the first k whose sample factor * k + tap is inside
        last = min(count, (length - 1 - tap) // factor + 1)  # one past the last such k
        inside = plane[_at(axis, slice(factor * first + tap, factor * (last - 1) + tap + 1, factor))]
        out[_at(axis, slice(first, last))] += inside * weight
        for k in [*range(first), *range(last, count)]:
            out[_at(axis, slice(k, k + 1))] += _beyond(plane, axis, factor * k + tap) * weight
    return out


def _beyond(plane: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Sample ``index`` along ``axis`` (one sample thick), continued past the edges by odd reflection
    (2 * edge - mirror): a straight line stays straight there, so resampling it down and up again
    changes nothing even at the border, where repeating the edge sample would bend it."""
    length = plane.shape[axis]
    if 0 <= index < length:
        return plane[_at(axis, slice(index, index + 1))]
    edge, mirror = (0, -index) if index < 0 else (length - 1, 2 * (length - 1) - index)
    mirror = min(max(mirror, 0), length - 1)
    return 2 * plane[_at(axis, slice(edge, edge + 1))] - plane[_at(axis, slice(mirror, mirror + 1))]
