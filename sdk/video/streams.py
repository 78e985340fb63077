"""Everything in a video file that is not the picture being upscaled: copied packet for packet.

Audio is never re-encoded, subtitles (text and bitmap) and attachments (the fonts of ASS subtitles in
Matroska) travel as they are, with their languages, titles and dispositions. A stream the output
container cannot hold is refused before any work, naming a container that holds them all; it is
dropped only when the user asks (``drop_streams``), and then said so.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from . import libav

log = logging.getLogger(__name__)

# Containers offered to hold what the chosen one cannot, most capable first.
_ALTERNATIVES = (("matroska", ".mkv"), ("mov", ".mov"), ("mp4", ".mp4"), ("webm", ".webm"))
_HOLDS_ATTACHMENTS = {"matroska"}
_DISCARD_ALL = 48  # AVDISCARD_ALL


@dataclass(frozen=True)
class CopyPlan:
    """Which of the source's streams go to the output unchanged, and what is dropped on request."""

    streams: tuple[int, ...] = ()  # stream indexes whose packets are copied
    attachments: tuple[int, ...] = ()  # attachment streams (Matroska), copied whole
    dropped: tuple[str, ...] = field(default_factory=tuple)  # descriptions of what was dropped


@functools.cache
def _codecs(container_format: str) -> frozenset[str]:
    av = libav.import_av()
    with av.open(io.BytesIO(), "w", format=container_format) as dummy:
        return frozenset(dummy.supported_codecs)


def describe(stream) -> str:
    language = f" ({stream.language})" if getattr(stream, "language", None) else ""
    return f"stream #{stream.index} {stream.type} {_codec_name(stream) or 'unknown codec'}{language}"


def _codec_name(stream) -> str | None:
    if stream.type == "attachment":
        return "attachment"
    try:
        return stream.codec_context.name
    except Exception:  # a codec FFmpeg has no decoder for
        return None


def _holds(container_format: str, stream) -> bool:
    name = _codec_name(stream)
    if name == "attachment":
        return container_format in _HOLDS_ATTACHMENTS
    return name is not None and name in _codecs(container_format)


def plan(source_path, video_index: int, video_codec: str, container_format: str, drop: bool = False) -> CopyPlan:
    """What to copy from ``source_path`` into a ``container_format`` output, or an InputError (before
    any work) naming the streams it cannot hold and a container that can."""
    with libav.closing(libav.open_input(source_path)) as container:
        copied: list[Any] = []
        attachments: list[Any] = []
        dropped, refused = [], []
        for stream in container.streams:
            if stream.index == video_index or _read_as_chapters(stream):
                continue
            if _holds(container_format, stream):
                (attachments if stream.type == "attachment" else copied).append(stream.index)
            elif drop:
                dropped.append(describe(stream))
            else:
                refused.append(stream)
        if refused:
            raise InputError(_refusal(container, refused, video_codec, container_format))
    for text in dropped:
        log.warning("dropping %s: the output container (%s) cannot hold it (--drop-streams)", text, container_format)
    return CopyPlan(tuple(copied), tuple(attachments), tuple(dropped))


def _read_as_chapters(stream) -> bool:
    """MP4's and MOV's chapter titles live in a text track that the demuxer reads into the file's
    chapters and then discards; the chapters are copied as chapters (the muxer writes its own track)."""
    return stream.type == "data" and getattr(stream, "discard", 0) == _DISCARD_ALL


def _refusal(container, refused: list, video_codec: str, container_format: str) -> str:
    names = "; ".join(describe(s) for s in refused)
    others = [s for s in container.streams if s.type != "video" or s in refused]
    for fmt, suffix in _ALTERNATIVES:
        if fmt != container_format and video_codec in _codecs(fmt) and all(_holds(fmt, s) for s in others):
            where = f"write {suffix} instead (it holds them all)"
            break
    else:
        where = "no common container holds them all"
    return (
        f"the output container ({container_format}) cannot hold {names}: {where}, or pass --drop-streams "
        "(drop_streams=True) to leave them out"
    )
