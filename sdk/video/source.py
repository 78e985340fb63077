"""What a video file holds: is it a video at all, its picture's facts, and where its frames and keyframes are.

A file is a video when FFmpeg opens it and finds a moving-picture stream in a real container: a
still image (which FFmpeg opens too, as a one-frame "image2" or "*_pipe" input) and text that its
"tty" reader would show as ANSI art are not. The file's suffix is never trusted either way.

:func:`probe` reads every packet header of the picture stream once (no decoding): that gives the
exact frame count and every presentation timestamp, the keyframes where the work can be cut into
segments, and where a damaged file stops being readable.
"""

from __future__ import annotations

import array
import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import colorimetry, libav

log = logging.getLogger(__name__)

# FFmpeg inputs that open a still image or text as a "video": never videos here.
_NOT_VIDEO_FORMATS = re.compile(r"^(image2|.*_pipe|tty|lavfi|apng|gif|webp|ico|bmp|png|jpeg.*)$")
_NOT_VIDEO_CODECS = {"ansi", "png", "mjpeg", "bmp", "gif", "tiff", "webp", "jpeg2000"}


@dataclass(frozen=True)
class VideoSource:
    """The picture stream of a video file, as the SDK converts and rewrites it."""

    path: Path
    index: int  # the stream's index in the file
    codec: str
    width: int
    height: int
    pix_fmt: str
    depth: int  # bits per sample
    subsampling: tuple[int, int] | None  # chroma (horizontal, vertical) factors; None: grey (Y only)
    rgb: bool  # the pictures are stored as RGB, not YCbCr
    time_base: Fraction
    frame_rate: Fraction | None  # the average rate, a hint for encoders' rate control (never for timing)
    sample_aspect_ratio: Fraction | None
    display_matrix: tuple[int, ...] | None  # the rotation/flip a player applies (9 int32, FFmpeg's layout)
    colorimetry: colorimetry.Colorimetry
    pts: array.array  # every frame's presentation timestamp, in presentation order
    keyframes: tuple[int, ...]  # the pts of each keyframe, in order
    damage: str | None = None  # where the file stops being readable, if it does
    hdr_side_data: tuple[tuple[str, bytes], ...] = ()

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def rotation(self) -> int:
        """Degrees counter-clockwise a player turns the picture (0 when there is no display matrix)."""
        if not self.display_matrix:
            return 0
        a, b = self.display_matrix[0], self.display_matrix[1]
        return round(-float(np.degrees(np.arctan2(b, a)))) % 360 if (a or b) else 0

    def describe(self) -> str:
        return (
            f"{self.width}x{self.height} {self.codec} {self.pix_fmt}, {self.frames} frame(s), "
            f"{self.colorimetry.describe()}"
        )


def picture_streams(container) -> list:
    """The moving-picture streams of an open container (cover art and other attached pictures left out)."""
    return [
        s
        for s in container.streams.video
        if not s.disposition & _attached_pic() and (s.codec_context.name or "") not in _NOT_VIDEO_CODECS
    ]


def _attached_pic() -> int:
    av = libav.import_av()
    return int(av.stream.Disposition.attached_pic)


def is_video(path: Path | str) -> bool:
    """True when FFmpeg reads ``path`` as a container with a moving-picture stream (by content, not suffix)."""
    av = libav.import_av()
    try:
        with av.open(str(path), "r") as container:
            return _is_video_container(container)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return False


def _is_video_container(container) -> bool:
    names = container.format.name.split(",")
    if any(_NOT_VIDEO_FORMATS.match(name) for name in names):
        return False
    return bool(picture_streams(container))


def probe(path: Path | str) -> VideoSource:
    """The facts of ``path``'s picture stream, or an InputError saying why it cannot be upscaled."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video file {str(path)!r} does not exist")
    with libav.closing(libav.open_input(path)) as container:
        if not container.streams:
            # An MP4 whose recording was cut off before its index (moov) was written opens like this.
            raise InputError(
                f"{path}: FFmpeg reads it as {container.format.name.split(',')[0]} but finds no streams in it; "
                "is it whole? (an interrupted MP4 recording lacks its index: recover it with a repair tool first)"
            )
        if not _is_video_container(container):
            kinds = sorted({s.type for s in container.streams})
            raise InputError(
                f"{path} holds no video stream (it has {', '.join(kinds)}); pass a video file, or an image"
            )
        stream = picture_streams(container)[0]
        first, damaged_start = _first_frame(container, stream, path)
        # Read everything off the stream while the container is open: PyAV's stream objects point
        # into the container's memory.
        index, codec = stream.index, stream.codec_context.name
        time_base = Fraction(stream.time_base)
        sar = stream.codec_context.sample_aspect_ratio
        rate = stream.average_rate or stream.guessed_rate
        fmt = first.format
        rgb, grey = fmt.is_rgb, len(fmt.components) < 3
        location = None if rgb or grey else _chroma_location(stream, first)
        pts, keyframes, damage = _scan(container, stream, start_known=damaged_start is not None)
        damage = "; ".join(d for d in (damaged_start, damage) if d) or None
    if not pts:
        raise InputError(f"{path}: its video stream has no frames that can be read{f' ({damage})' if damage else ''}")
    tags = colorimetry.resolve(
        first.colorspace,
        first.color_range,
        first.color_primaries,
        first.color_trc,
        location,
        first.height,
        jpeg=fmt.name.startswith("yuvj"),
    )
    return VideoSource(
        path=path,
        index=index,
        codec=codec,
        width=first.width,
        height=first.height,
        pix_fmt=fmt.name,
        depth=libav.depth_of(fmt),
        subsampling=None if grey else (1, 1) if rgb else libav.subsampling_of(fmt),
        rgb=rgb,
        time_base=time_base,
        frame_rate=Fraction(rate) if rate else None,
        sample_aspect_ratio=Fraction(sar) if sar else None,
        display_matrix=_display_matrix(first),
        colorimetry=tags,
        pts=pts,
        keyframes=tuple(keyframes),
        damage=damage,
        hdr_side_data=_hdr_side_data(first),
    )


def _first_frame(container, stream, path: Path) -> tuple:
    """(the first frame the decoder gives, where damaged packets before it were skipped or None).

    As FFmpeg does, packets the decoder rejects at the start are skipped until one decodes; only a
    stream in which nothing decodes is refused."""
    av = libav.import_av()
    skipped: list = []

    def note(packet, exc: BaseException) -> None:
        # What the decoder logged ("Invalid NAL unit size ...") says more than the error it returned.
        said = [message.strip() for _level, _name, message in logs]
        skipped.append((packet.pts, said[0] if said else libav.reason(exc)))
        logs.clear()

    try:
        with libav.ffmpeg_errors() as logs:
            for frame in libav.decode_skipping(container, stream, note):
                return frame, _skipped_before(skipped, stream.time_base)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{path}: its video stream cannot be decoded ({libav.reason(exc)})") from exc
    found = f" ({skipped[0][1]} at {libav.timestamp(skipped[0][0], stream.time_base)})" if skipped else ""
    raise InputError(f"{path}: its video stream has no frame that can be decoded{found}")


def _skipped_before(skipped: list, time_base) -> str | None:
    if not skipped:
        return None
    pts, message = skipped[0]
    return (
        f"the file is damaged near {libav.timestamp(pts, time_base)} ({message}): {len(skipped)} picture(s) "
        "there cannot be decoded and the frames that depend on them are lost"
    )


def _scan(container, stream, start_known: bool = False) -> tuple[array.array, list[int], str | None]:
    """(every frame's pts in presentation order, keyframe pts, where a damaged file stops) from the
    packet headers alone. ``start_known``: damage at the start was named already (by the decoder)."""
    av = libav.import_av()
    container.seek(0, stream=stream, backward=True, any_frame=False)
    pts, keyframes, damage = array.array("q"), [], None
    missing = 0

    def damaged(message: str) -> str:
        where = libav.timestamp(max(pts), stream.time_base) if pts else "the start"
        return f"the file is damaged near {where} ({message.strip()}): frames stored there are lost"

    with libav.ffmpeg_errors() as logs:
        try:
            for packet in container.demux(stream):
                if logs and damage is None and start_known and not pts:
                    logs.clear()  # the parser's view of the damaged first pictures, which the decoder named
                elif logs and damage is None:  # the demuxer skipped over something it could not read
                    damage = damaged(logs[0][2])
                if packet.size == 0:
                    continue  # the flushing packet at the end of the stream
                if packet.pts is None:
                    missing += 1
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
        except (av.FFmpegError, OSError) as exc:
            damage = damaged(libav.reason(exc))
        if logs and damage is None:
            damage = damaged(logs[0][2])
    if missing and not pts:
        raise InputError(
            f"{container.name}: its video packets carry no timestamps (a raw elementary stream); put it in a "
            "container first: ffmpeg -i IN -c copy OUT.mkv"
        )
    ordered = array.array("q", sorted(set(pts)))
    return ordered, sorted(set(keyframes)), damage


_CHROMA = re.compile(r"\bcl:(\w+)")


def _chroma_location(stream, frame) -> str | None:
    """Where the frame's chroma samples sit. PyAV does not expose AVFrame.chroma_location; FFmpeg's
    own showinfo filter prints it (as "cl:left"), so the first frame goes through that once."""
    libav.import_av()
    import av.filter
    import av.logging

    try:
        graph = av.filter.Graph()
        source = graph.add_buffer(template=stream)
        info = graph.add("showinfo")
        sink = graph.add("buffersink")
        source.link_to(info)
        info.link_to(sink)
        graph.configure()
        previous = av.logging.get_level()
        av.logging.set_level(av.logging.INFO)
        try:
            with av.logging.Capture() as logs:
                graph.push(frame)
                graph.pull()
        finally:
            av.logging.set_level(previous)
    except (av.FFmpegError, ValueError) as exc:
        log.debug("showinfo failed (%s): chroma location unknown", exc)
        return None
    for _level, name, message in logs:
        if name == "showinfo":
            found = _CHROMA.search(message)
            if found:
                return found.group(1)
    return None


def _side_data(frame, name: str) -> bytes | None:
    for item in frame.side_data:
        if item.type.name == name:
            return bytes(item)
    return None


def _display_matrix(frame) -> tuple[int, ...] | None:
    raw = _side_data(frame, "DISPLAYMATRIX")
    if raw is None or len(raw) != 36:
        return None
    matrix = tuple(int(v) for v in np.frombuffer(raw, dtype="<i4"))
    return None if matrix == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30) else matrix


def _hdr_side_data(frame) -> tuple[tuple[str, bytes], ...]:
    """HDR10's static metadata (mastering display, content light level), carried to the output's frames."""
    found = []
    for name in ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"):
        raw = _side_data(frame, name)
        if raw:
            found.append((name, raw))
    return tuple(found)
