"""PyAV, imported lazily, and the small facts about FFmpeg's objects the rest of sdk.video needs."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError

INSTALL_HINT = "pip install 'deploy-sdk[video]'"


def import_av():
    """The ``av`` module, or an InputError that names the extra to install."""
    try:
        import av
    except ImportError as exc:
        raise InputError(f"video needs PyAV ({exc}); install it with {INSTALL_HINT}") from exc
    return av


def av_errors() -> tuple[type[BaseException], ...]:
    """What PyAV raises for files and codecs that fail (FFmpeg's errors, and OSError under them)."""
    av = import_av()
    return (av.FFmpegError, OSError, ValueError)


def open_input(path: Path | str, label: str | None = None):
    """An input container, or an InputError saying the file is no video FFmpeg can read."""
    av = import_av()
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{label or path} is not a video FFmpeg can read ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return re.sub(r"^\[Errno -?\d+\] ", "", text) or type(exc).__name__


def reason(exc: BaseException) -> str:
    """FFmpeg's message without its errno prefix."""
    return _reason(exc)


# -- pixel formats -------------------------------------------------------------------------------------


def depth_of(fmt) -> int:
    return max(c.bits for c in fmt.components)


def subsampling_of(fmt) -> tuple[int, int]:
    """(horizontal, vertical) chroma subsampling factors: (2, 2) for 4:2:0, (1, 1) for 4:4:4."""
    return 16 // fmt.chroma_width(16), 16 // fmt.chroma_height(16)


def planar_yuv(fmt) -> bool:
    """Y, Cb and Cr in planes 0, 1 and 2 (alpha, if any, after them)."""
    comps = fmt.components
    return not fmt.is_rgb and len(comps) >= 3 and [c.plane for c in comps[:3]] == [0, 1, 2]


def planar_name(depth: int, subsampling: tuple[int, int]) -> str:
    """The planar YUV pixel format FFmpeg names for a depth and a chroma subsampling."""
    layout = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (1, 2): "440", (4, 1): "411", (4, 4): "410"}
    name = f"yuv{layout.get(subsampling, '420')}p"
    return name if depth <= 8 else f"{name}{depth}le"


def read_plane(plane, dtype: np.dtype, width: int, height: int) -> np.ndarray:
    """A frame plane as a height x width array (a view of the frame's memory, rows padded to line_size)."""
    rows = np.frombuffer(plane, dtype=dtype, count=plane.line_size // dtype.itemsize * height)
    return rows.reshape(height, -1)[:, :width]


def write_plane(plane, array: np.ndarray) -> None:
    """Copy an array into a frame plane (rows padded to line_size)."""
    height, width = array.shape
    target = np.frombuffer(memoryview(plane), dtype=array.dtype).reshape(plane.height, -1)
    target[:height, :width] = array


def seconds(value: int | None, time_base: Fraction) -> float:
    return float(value * time_base) if value is not None else 0.0


def timestamp(value: int | None, time_base: Fraction) -> str:
    """A position as H:MM:SS.mmm, for messages."""
    total = seconds(value, time_base)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{secs:06.3f}"


def decode_skipping(container, stream, skipped: Callable[[object, BaseException], None] | None = None) -> Iterator:
    """Every frame the decoder gives for ``stream``, skipping the packets it rejects as damaged instead
    of stopping, as FFmpeg's own tool does; ``skipped`` hears each such (packet, error)."""
    av = import_av()
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.InvalidDataError as exc:
            if skipped is not None:
                skipped(packet, exc)


@contextlib.contextmanager
def ffmpeg_errors():
    """The messages FFmpeg logs at error level in this thread while the block runs, as a list of
    (level, component, message) that fills as they come: how a demuxer that skips over damage (a
    Matroska cluster it cannot parse, a file that ends early) says so without raising."""
    import_av()
    import av.logging

    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(previous)


@contextlib.contextmanager
def closing(container):
    try:
        yield container
    finally:
        with contextlib.suppress(Exception):
            container.close()
