"""Video in, video out: every frame at its own timestamp, the other streams untouched, colour right.

    from sdk.video import open_predictor, upscale_video, read_frames

    with open_predictor("espcn") as p:             # a Predictor opened to share the CPU with codecs
        upscale_video(p, "clip.mkv", "clip-x3.mkv", progress=lambda done, total: ...)
    for frame in read_frames("clip.mkv"):          # RGB at the source's bit depth, with timestamps
        frame.pixels, frame.pts, frame.time

Needs PyAV (``pip install 'deploy-sdk[video]'``); importing this package does not import it.
docs/video.md is the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from .encoder import EncoderSettings
from .engine import open_predictor
from .frames import Frame
from .job import DEFAULT_SEGMENT_SECONDS, VideoSummary


def upscale_video(
    predictor,
    input_path,
    output_path,
    scale: int | None = None,
    *,
    codec: str | None = None,
    crf: float | None = None,
    preset: str | None = None,
    pix_fmt: str | None = None,
    encoder_options: dict[str, str] | None = None,
    lossless: bool = False,
    drop_streams: bool = False,
    tile="auto",
    progress: Callable[[int, int], None] | None = None,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
) -> VideoSummary:
    """Upscale the video file ``input_path`` into ``output_path`` (its container from the extension)
    with ``predictor``; the options are the CLI's (``sdk upscale --help``).

    Resumable: run it again after an interruption and finished segments are kept. ``progress`` is
    called with (frames done, frames in total). Raises :class:`sdk.InputError` before any work when
    something cannot be done.
    """
    from . import job

    settings = EncoderSettings(codec, crf, preset, pix_fmt, dict(encoder_options or {}), lossless)
    planned = job.prepare(predictor, input_path, output_path, scale, settings, drop_streams, segment_seconds)
    return job.run(predictor, planned, tile=tile, progress=progress)


def read_frames(path) -> Iterator[Frame]:
    """Every frame of a video file in presentation order: :class:`Frame` records with RGB pixels at
    the source's bit depth (uint8, or uint16 for deeper sources) and their timestamps."""
    from . import frames, segments, source

    found = source.probe(path)
    if found.damage:
        import logging

        logging.getLogger(__name__).warning("%s: %s", path, found.damage)
    for segment in segments.split(found, 0):
        for decoded in frames.decode(found, segment.start, segment.stop):
            yield Frame(frames.to_pixels(decoded, found), decoded.pts, found.time_base)


def is_video(path) -> bool:
    """Whether ``path`` is a video file, judged by its content (FFmpeg's probe), not its name."""
    from .source import is_video as probe_video

    return Path(path).is_file() and probe_video(path)


__all__ = ["EncoderSettings", "Frame", "VideoSummary", "is_video", "open_predictor", "read_frames", "upscale_video"]
