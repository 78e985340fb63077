"""Joining the encoded segments and the source's other streams into the output file.

The segments' packets are copied in order; the source's audio, subtitles and data are copied from the
source itself, packet for packet, interleaved with the picture by decoding time. The container's
metadata and chapters, each stream's metadata, language and disposition, attachments, and the
picture's display matrix (rotation) go over too. The file is written under a temporary name and
renamed into place only when complete.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

from ..errors import SDKError
from ..files import atomic_file
from . import libav, packets
from .encoder import EncoderPlan, configure
from .source import VideoSource
from .streams import CopyPlan

# Container metadata a muxer writes for itself; copying the source's would claim the wrong tool.
_OWN_KEYS = {"encoder", "major_brand", "minor_version", "compatible_brands"}


def join(
    source: VideoSource,
    segments: Sequence[Path],
    copy: CopyPlan,
    output: Path,
    container_format: str,
    plan: EncoderPlan,
) -> None:
    av = libav.import_av()
    with (
        atomic_file(output) as handle,
        libav.closing(libav.open_input(source.path)) as original,
        av.open(handle, "w", format=container_format) as out,
    ):
        out.metadata.update({k: v for k, v in original.metadata.items() if k.lower() not in _OWN_KEYS})
        # The picture's stream gets an encoder of the segments' own settings, opened but never fed:
        # its extradata (SPS/PPS) is theirs, checked below, and the container's header needs it.
        picture = out.add_stream(plan.codec)
        configure(picture.codec_context, plan, source)
        _tag_picture(picture, source, original.streams[source.index])
        targets = {}
        for index in copy.streams:
            stream = original.streams[index]
            targets[index] = out.add_stream_from_template(stream)
            _copy_stream_facts(stream, targets[index])
        for index in copy.attachments:
            stream = original.streams[index]
            attached = out.add_attachment(stream.name, stream.mimetype, bytes(stream.data))
            _copy_stream_facts(stream, attached)
        chapters = original.chapters()
        if chapters:
            out.set_chapters(chapters)
        out.start_encoding()
        _check_extradata(segments, picture.codec_context.extradata)
        video = _segment_packets(segments, picture)
        others = _source_packets(original, targets)
        for packet in heapq.merge(video, others, key=_decode_time):
            out.mux(packet)


def _tag_picture(picture, source: VideoSource, original) -> None:
    _copy_stream_facts(original, picture)
    if source.display_matrix:
        picture.set_display_matrix(list(source.display_matrix))
    picture.time_base = source.time_base


def _check_extradata(segments: Sequence[Path], expected: bytes | None) -> None:
    for path in segments:
        if packets.header(path)["extradata"] != (expected or b""):
            raise SDKError(
                f"segment {path.name} was encoded with other codec headers than this run's encoder makes (an "
                "encoder upgrade between runs?); delete the hidden folder beside the output and run again"
            )


def _copy_stream_facts(source_stream, target) -> None:
    target.metadata.update({k: v for k, v in source_stream.metadata.items() if k.lower() not in _OWN_KEYS})
    target.disposition = source_stream.disposition


def _segment_packets(segments: Sequence[Path], target) -> Iterator:
    """The picture's packets, segment after segment, with decoding times that keep increasing."""
    last = None
    for path in segments:
        for packet in packets.read(path):
            if last is not None and packet.dts is not None and packet.dts <= last:
                if packet.pts is not None and last + 1 > packet.pts:
                    raise SDKError(
                        f"segment {path.name} starts before the one before it ends (decoding time {packet.dts} "
                        f"<= {last}); this is a bug, please report it"
                    )
                packet.dts = last + 1  # a segment's first packets may start a tick early (B-frame delay)
            last = packet.dts if packet.dts is not None else last
            packet.stream = target
            yield packet


def _source_packets(container, targets: dict) -> Iterator:
    if not targets:
        return
    for packet in container.demux([container.streams[i] for i in targets]):
        if packet.size == 0 and packet.pts is None:
            continue
        packet.stream = targets[packet.stream.index]
        yield packet


def _decode_time(packet) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return Fraction(stamp or 0) * packet.time_base
