"""Encoded packets kept as they are: the segment files of a video job.

A segment's packets must reach the output with the encoder's own timestamps, durations and flags.
Every container bends them a little (Matroska to milliseconds, NUT and MPEG-TS to time bases of their
own, all of them to non-negative decoding times), so segments are kept in this plain format instead:
a JSON header (time base, the encoder's extradata), then per packet its pts, dts, duration, flags and
bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from . import libav

_MAGIC = b"sdk-video-packets 1\n"
_RECORD = struct.Struct("<qqqiI")  # pts, dts, duration, keyframe, size
_NONE = -(2**63)


def _value(value: int | None) -> int:
    return _NONE if value is None else int(value)


class PacketWriter:
    """Write the encoder's packets for one segment to ``path``."""

    def __init__(self, path: Path, time_base: Fraction, extradata: bytes | None):
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        header = {"time_base": [time_base.numerator, time_base.denominator], "extradata": (extradata or b"").hex()}
        self.handle.write(_MAGIC + json.dumps(header).encode() + b"\n")

    def write(self, packets) -> None:
        for packet in packets:
            data = bytes(packet)
            record = (_value(packet.pts), _value(packet.dts), _value(packet.duration), int(packet.is_keyframe))
            self.handle.write(_RECORD.pack(*record, len(data)) + data)

    def close(self) -> None:
        self.handle.flush()
        import os

        os.fsync(self.handle.fileno())
        self.handle.close()


def header(path: Path) -> dict:
    with open(path, "rb") as handle:
        return _header(handle, path)


def _header(handle, path: Path) -> dict:
    if handle.readline() != _MAGIC:
        raise ValueError(f"{path} is not a segment file of this SDK")
    found = json.loads(handle.readline())
    found["time_base"] = Fraction(*found["time_base"])
    found["extradata"] = bytes.fromhex(found["extradata"])
    return found


def read(path: Path) -> Iterator:
    """The packets of a segment file, as PyAV packets in the segment's time base."""
    av = libav.import_av()
    with open(path, "rb") as handle:
        time_base = _header(handle, path)["time_base"]
        while True:
            head = handle.read(_RECORD.size)
            if not head:
                return
            pts, dts, duration, keyframe, size = _RECORD.unpack(head)
            packet = av.Packet(handle.read(size))
            packet.time_base = time_base
            packet.pts = None if pts == _NONE else pts
            packet.dts = None if dts == _NONE else dts
            if duration != _NONE:
                packet.duration = duration
            packet.is_keyframe = bool(keyframe)
            yield packet
