"""Decoded frames <-> RGB pixels, and decoding exactly the frames of one stretch of a video.

A stretch is given by presentation timestamps, starting at a keyframe. Decoding starts at that
keyframe and keeps every frame whose timestamp the stretch owns, in presentation order, whatever
order the codec stores them in (B-frames) and however irregular their spacing (variable frame rate).
Frames an open GOP shows before its keyframe belong to the stretch before, which decodes them
properly by reading on past its end until it has them all.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InputError
from . import libav, yuv
from .encoder import EncoderPlan
from .source import VideoSource

log = logging.getLogger(__name__)

# Frames decoded past a stretch's end while waiting for the ones it still owns (an open GOP's
# leading frames come a few frames after their keyframe); after that the missing ones are lost.
_READ_PAST = 32


@dataclass(frozen=True)
class Frame:
    """One picture of a video: RGB pixels at the source's bit depth (uint8 for 8-bit sources, uint16
    over 0..65535 for deeper ones) and its presentation timestamp (``pts`` x ``time_base`` seconds)."""

    pixels: np.ndarray
    pts: int
    time_base: Fraction

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)


def to_pixels(frame, source: VideoSource) -> np.ndarray:
    """A decoded frame -> H x W x 3 RGB as the source's colorimetry says."""
    if (frame.width, frame.height) != (source.width, source.height):
        raise InputError(
            f"{source.path}: the picture changes size at {libav.timestamp(frame.pts, source.time_base)} "
            f"({source.width}x{source.height} -> {frame.width}x{frame.height}); cut the video there and upscale "
            "each part"
        )
    fmt = frame.format
    if source.rgb:
        packed = frame.reformat(format="rgb24" if source.depth <= 8 else "rgb48le")
        return packed.to_ndarray()
    if source.subsampling is None:
        y = libav.read_plane(frame.planes[0], _dtype(source.depth), frame.width, frame.height)
        return yuv.to_rgb(y, None, None, source.colorimetry, source.depth)
    if not libav.planar_yuv(fmt) or libav.depth_of(fmt) != source.depth:
        # Packed or semi-planar layouts (NV12, P010, YUYV): repacked to planes, values untouched.
        frame = frame.reformat(format=libav.planar_name(source.depth, source.subsampling))
        fmt = frame.format
    dtype = _dtype(source.depth)
    planes = [libav.read_plane(frame.planes[0], dtype, frame.width, frame.height)]
    for plane in frame.planes[1:3]:
        planes.append(libav.read_plane(plane, dtype, plane.width, plane.height))
    y, cb, cr = planes
    return yuv.to_rgb(y, cb, cr, source.colorimetry, source.depth)


def to_frame(pixels: np.ndarray, pts: int, plan: EncoderPlan, source: VideoSource):
    """H x W x 3 RGB -> a PyAV frame in the encoder's pixel format, tagged and timed."""
    av = libav.import_av()
    height, width = pixels.shape[:2]
    frame = av.VideoFrame(width, height, plan.pix_fmt)
    planes = yuv.from_rgb(pixels, plan.colorimetry, plan.depth, plan.subsampling)
    for plane, values in zip(frame.planes, planes):
        if values is not None:
            libav.write_plane(plane, values)
    frame.pts = pts
    frame.time_base = source.time_base
    tags = plan.colorimetry
    frame.colorspace, frame.color_range = tags.matrix, tags.range
    frame.color_primaries, frame.color_trc = tags.primaries, tags.transfer
    return frame


def _dtype(depth: int) -> np.dtype:
    return np.dtype(np.uint8 if depth <= 8 else np.uint16)


def stretch(source: VideoSource, start: int | None = None, stop: int | None = None) -> list[int]:
    """The timestamps of the frames in [start, stop) (None: from the first / to the last)."""
    pts = source.pts
    first = 0 if start is None else bisect.bisect_left(pts, start)
    last = len(pts) if stop is None else bisect.bisect_left(pts, stop)
    return list(pts[first:last])


def duration(source: VideoSource, frame) -> int | None:
    """How long a frame shows: until the next frame's timestamp (variable frame rates included); the
    last frame keeps the duration its packet gave."""
    pts = source.pts
    index = bisect.bisect_left(pts, frame.pts)
    if index + 1 < len(pts):
        return pts[index + 1] - frame.pts
    return frame.duration or None


def decode(
    source: VideoSource,
    start: int | None = None,
    stop: int | None = None,
    on_lost: Callable[[list[int]], None] | None = None,
) -> Iterator:
    """The decoded frames (PyAV frames) of [start, stop), in presentation order, each exactly once.

    Frames that cannot be decoded (damage) are skipped; ``on_lost`` hears their timestamps.
    """
    av = libav.import_av()
    wanted = stretch(source, start, stop)
    if not wanted:
        return
    owed = set(wanted)
    lost: set[int] = set()
    pending: dict[int, object] = {}  # decoded, waiting for an earlier frame still owed
    ahead = 0
    position = 0  # index into wanted of the next frame to hand out
    with libav.closing(libav.open_input(source.path)) as container:
        stream = container.streams[source.index]
        stream.thread_type = "AUTO"
        if wanted[0] != source.pts[0]:
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)
        try:
            for frame in libav.decode_skipping(container, stream, _skipped):
                pts = frame.pts
                if pts in owed:
                    owed.discard(pts)
                    pending[pts] = frame
                elif stop is not None and pts is not None and pts >= stop:
                    ahead += 1
                if len(pending) > _READ_PAST:  # frames owed before all of these are not coming
                    gone = {p for p in owed if p < min(pending)}
                    owed -= gone
                    lost |= gone
                while position < len(wanted) and wanted[position] not in owed:
                    got = pending.pop(wanted[position], None)
                    if got is not None:
                        yield got
                    position += 1
                if not owed or ahead > _READ_PAST:
                    break
        except (av.FFmpegError, OSError) as exc:
            log.warning("%s: decoding stopped (%s)", source.path, libav.reason(exc))
    lost |= owed
    for pts in wanted[position:]:
        if pts in pending:
            yield pending.pop(pts)
    if lost and on_lost is not None:
        on_lost(sorted(lost))


def _skipped(packet, exc: BaseException) -> None:
    log.debug("skipping a damaged packet at %s: %s", packet.pts, exc)
