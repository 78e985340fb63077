"""Small test videos made with PyAV: smooth moving colour, any pixel format, colour tags, frame timing,
audio, subtitles and attachments, so each test says exactly what its clip holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pgs
import spu

WIDTH, HEIGHT = 64, 48


def picture(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Frame ``index``: gentle colour gradients that move with the index (float RGB in 0.1..0.9).

    Chroma varies slowly (flat at the edges), as in real pictures, so 4:2:0's chroma filtering alone
    changes no sample by more than one code value and a colour error shows plainly.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / (width - 1), y / (height - 1)
    shift = 0.35 * index
    r = 0.5 + 0.3 * np.cos(np.pi * u + shift)
    g = 0.5 + 0.3 * np.cos(np.pi * v - shift)
    b = 0.5 + 0.25 * np.cos(np.pi * (u + v) / 2 + 2 * shift)
    return np.stack([r, g, b], axis=-1)


@dataclass
class Clip:
    """What to put in a test video."""

    frames: int = 12
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    width: int = WIDTH
    height: int = HEIGHT
    time_base: Fraction = Fraction(1, 1000)
    durations: list[int] | None = None  # per-frame durations in time_base units (None: 40 ms each)
    tags: dict = field(default_factory=dict)  # colorspace, color_range, color_primaries, color_trc
    options: dict = field(default_factory=dict)  # encoder options
    audio: str | None = None  # "aac", "libopus", "pcm_s16le"
    subtitles: str | None = None  # SRT text
    bitmap_subtitles: list[tuple[int, int, np.ndarray]] | None = None  # DVD subtitles: (start, duration, bitmap)
    pgs_subtitles: list[tuple[int, int, np.ndarray]] | None = None  # Blu-ray (PGS): (start ms, duration ms, bitmap)
    attachment: tuple[str, str, bytes] | None = None  # (name, mimetype, data)
    rotation: int = 0
    language: str | None = None
    keyint: int | None = None  # a keyframe every N frames
    title: str | None = None  # the container's title (metadata)
    chapters: list[tuple[int, int, str]] | None = None  # (start, end, title) in time_base units
    sample_aspect_ratio: Fraction | None = None
    audio_disposition: str | None = None  # e.g. "comment" (beside "default")


def timestamps(clip: Clip) -> list[int]:
    steps = clip.durations or [int(Fraction(1, 25) / clip.time_base)] * clip.frames
    out, t = [], 0
    for step in steps[: clip.frames]:
        out.append(t)
        t += step
    return out


def make(path: Path, clip: Clip, container: str | None = None) -> Path:
    """Write ``clip`` to ``path`` (its container from the suffix, or ``container``)."""
    import av

    path = Path(path)
    srt = None
    if clip.subtitles is not None:
        srt = path.with_suffix(".srt")
        srt.write_text(clip.subtitles)
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(clip.codec, rate=25)
        ctx = video.codec_context
        video.width, video.height, video.pix_fmt = clip.width, clip.height, clip.pix_fmt
        ctx.time_base = clip.time_base
        for key, value in clip.tags.items():
            setattr(ctx, key, value)
        options = dict(clip.options)
        if clip.keyint:
            options.update({"g": str(clip.keyint), "keyint_min": str(clip.keyint), "sc_threshold": "0"})
        if clip.codec == "libx265":
            options.setdefault("x265-params", "log-level=error")
        video.options = options
        if clip.sample_aspect_ratio:
            ctx.sample_aspect_ratio = clip.sample_aspect_ratio
        if clip.rotation:
            video.set_display_rotation(clip.rotation)
        if clip.title:
            out.metadata["title"] = clip.title
        if clip.chapters:
            out.set_chapters(
                [
                    {"id": i + 1, "start": a, "end": b, "time_base": clip.time_base, "metadata": {"title": t}}
                    for i, (a, b, t) in enumerate(clip.chapters)
                ]
            )
        if clip.language:
            video.metadata["language"] = clip.language
        audio = None
        if clip.audio:
            audio = out.add_stream(clip.audio, rate=48000)
            audio.layout = "stereo"
            audio.metadata["language"] = "fra"
            audio.metadata["title"] = "commentary"
            if clip.audio_disposition:
                audio.disposition = av.stream.Disposition[clip.audio_disposition] | av.stream.Disposition.default
        subtitle_source = subtitle_stream = None
        if srt is not None:
            subtitle_source = av.open(str(srt))
            subtitle_stream = out.add_stream_from_template(subtitle_source.streams.subtitles[0])
            subtitle_stream.metadata["language"] = "deu"
        bitmaps = _bitmap_stream(out, clip) if clip.bitmap_subtitles else None
        pgs_source = pgs_stream = None
        if clip.pgs_subtitles:
            sup = pgs.write_sup(
                path.with_suffix(".sup"), clip.pgs_subtitles, BITMAP_AT, (clip.width, clip.height), PGS_PALETTE
            )
            pgs_source = av.open(str(sup))
            pgs_stream = out.add_stream_from_template(pgs_source.streams.subtitles[0])
            pgs_stream.metadata["language"] = "jpn"
        if clip.attachment:
            out.add_attachment(*clip.attachment)
        for index, pts in enumerate(timestamps(clip)):
            frame = _frame(av, picture(index, clip.width, clip.height), clip)
            frame.pts = pts
            frame.time_base = clip.time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            _write_audio(av, out, audio, timestamps(clip)[-1] * clip.time_base + Fraction(1, 25))
        if subtitle_source is not None:
            _remux(subtitle_source, out, subtitle_stream)
        for start, duration, bitmap in clip.bitmap_subtitles or ():
            packet = av.Packet(spu.packet(bitmap, *BITMAP_AT, int(duration * clip.time_base * 1000)))
            packet.stream = bitmaps
            packet.time_base = clip.time_base
            packet.pts = packet.dts = start
            packet.duration = duration
            out.mux(packet)
        if pgs_source is not None:
            _remux(pgs_source, out, pgs_stream)
    return path


def _remux(source, out, stream) -> None:
    """Every packet of ``source``'s subtitle track into ``stream`` of ``out``; ``source`` is closed."""
    for packet in source.demux(source.streams.subtitles[0]):
        if packet.size:
            packet.stream = stream
            out.mux(packet)
    source.close()


BITMAP_AT = (8, 30)  # where the bitmap subtitles sit in the picture (x, y)
# PGS palette entries: index, Y, Cr, Cb, alpha (0 transparent; 1..3 opaque white, red, blue).
PGS_PALETTE = [(0, 16, 128, 128, 0), (1, 235, 128, 128, 255), (2, 81, 240, 90, 255), (3, 41, 110, 240, 255)]
# The DVD subtitle track's 16 colours: black, white, a grey and a yellow for the four pixel values,
# then greys.
PALETTE = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (255, 224, 0)] + [
    (16 * i, 16 * i, 16 * i) for i in range(4, 16)
]


def _bitmap_stream(out, clip: Clip):
    """A DVD subtitle track: FFmpeg's dvdsub encoder, opened but never fed, writes its header (the
    palette, as the VobSub .idx lines that Matroska keeps as the codec's private data); the packets
    come from tests/spu.py."""
    stream = out.add_stream("dvdsub", options={"palette": spu.palette_option(PALETTE)})
    stream.codec_context.time_base = clip.time_base
    stream.metadata["language"] = "eng"
    return stream


def _frame(av, rgb: np.ndarray, clip: Clip):
    """The picture as the clip's pixel format, converted with the clip's own matrix and range."""
    from sdk.video import colorimetry, libav, yuv

    fmt = av.VideoFormat(clip.pix_fmt)
    depth = libav.depth_of(fmt)
    tags = colorimetry.Colorimetry(
        matrix=clip.tags.get("colorspace", colorimetry.BT601 if clip.height < 720 else colorimetry.BT709),
        range=clip.tags.get("color_range", colorimetry.LIMITED),
        chroma_location="left",
    )
    bits = yuv.rgb_depth(depth)
    pixels = np.rint(rgb * (2**bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)
    grey = len(fmt.components) == 1
    planes = yuv.from_rgb(pixels, tags, depth, None if grey else libav.subsampling_of(fmt))
    frame = av.VideoFrame(clip.width, clip.height, clip.pix_fmt)
    for plane, values in zip(frame.planes, planes):
        if values is not None:
            libav.write_plane(plane, values)
    for key, value in clip.tags.items():
        setattr(frame, {"colorspace": "colorspace"}.get(key, key), value)
    return frame


def _write_audio(av, out, stream, seconds: Fraction) -> None:
    rate = 48000
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    size = stream.codec_context.frame_size or 1024
    for start in range(0, samples, size):
        chunk = tone[start : start + size]
        planar = np.stack([chunk, chunk])
        if fmt.startswith("s16"):
            frame = av.AudioFrame.from_ndarray(
                (planar.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout="stereo"
            )
        else:
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def frame_times(path: Path) -> list[Fraction]:
    """Every video frame's presentation time, in order, read back by decoding."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [Fraction(f.pts) * stream.time_base for f in container.decode(stream)]


def end_time(path: Path) -> Fraction:
    """When the picture ends: the last frame's time plus its duration, as the container stores them."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        last = max((p for p in container.demux(stream) if p.size), key=lambda p: p.pts)
        return Fraction(last.pts + last.duration) * stream.time_base


def packets(path: Path, kind: str) -> list[tuple[Fraction | None, bytes]]:
    """(time, bytes) of every packet of the first stream of ``kind``."""
    import av

    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [
            (None if p.pts is None else Fraction(p.pts) * stream.time_base, bytes(p))
            for p in container.demux(stream)
            if p.size
        ]


def chapters(path: Path) -> list[tuple[Fraction, Fraction, str]]:
    """(start, end, title) of every chapter, in seconds."""
    import av

    with av.open(str(path)) as container:
        return [
            (c["start"] * c["time_base"], c["end"] * c["time_base"], c["metadata"].get("title"))
            for c in container.chapters()
        ]
