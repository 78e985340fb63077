"""Blu-ray subtitle (PGS) display sets, built here: no encoder PyAV drives writes them, so a test
that needs a PGS track writes a ``.sup`` file (FFmpeg's ``sup`` demuxer reads it) and remuxes its
packets, as tests/spu.py does for DVD subtitles.

The format: each subtitle is a display set, a run of segments (a type byte, a 16-bit big-endian
size, the data):

- PCS (presentation composition): the video's size, the frame rate code, the composition's number
  and state (0x80: an epoch starts), the palette to use, and the objects placed, each with its
  window and position;
- WDS (window definition): the windows' areas;
- PDS (palette): entries of index, Y, Cr, Cb and alpha;
- ODS (object): the bitmap, 8 bits a pixel (palette indexes), run-length coded line by line (a
  non-zero byte is one pixel of that colour; 0x00 starts a run: ``00LLLLLL`` that many of colour 0,
  ``01LLLLLL LLLLLLLL`` the long form, ``10LLLLLL C`` and ``11LLLLLL LLLLLLLL C`` runs of colour C,
  ``00`` the end of the line);
- END.

A display set that places no object clears the screen. In a ``.sup`` file every segment is preceded
by ``PG`` and its presentation and decoding times (90 kHz ticks).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_PDS, _ODS, _PCS, _WDS, _END = 0x14, 0x15, 0x16, 0x17, 0x80
_EPOCH_START, _NORMAL = 0x80, 0x00
_FIRST_AND_LAST = 0xC0  # the object's data fits one ODS


def _line(row: np.ndarray) -> bytes:
    out = bytearray()
    start = 0
    while start < len(row):
        stop = start + 1
        while stop < len(row) and row[stop] == row[start] and stop - start < 16383:
            stop += 1
        count, colour = stop - start, int(row[start])
        if colour and count < 3:
            out += bytes([colour]) * count
        elif not colour:
            out += bytes([0, count]) if count < 64 else bytes([0, 0x40 | count >> 8, count & 0xFF])
        else:
            out += (
                bytes([0, 0x80 | count, colour]) if count < 64 else bytes([0, 0xC0 | count >> 8, count & 0xFF, colour])
            )
        start = stop
    return bytes(out) + b"\x00\x00"


def _segment(kind: int, data: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(data)) + data


def _composition(size, number: int, state: int, objects: list[tuple[int, int]]) -> bytes:
    head = struct.pack(">HHBHBBBB", size[0], size[1], 0x10, number, state, 0, 0, len(objects))
    return _segment(_PCS, head + b"".join(struct.pack(">HBBHH", 0, 0, 0, x, y) for x, y in objects))


def _window(x: int, y: int, width: int, height: int) -> bytes:
    return _segment(_WDS, struct.pack(">BBHHHH", 1, 0, x, y, width, height))


def display_set(bitmap: np.ndarray, at: tuple[int, int], size, number: int, palette) -> list[bytes]:
    """The segments that show ``bitmap`` (H x W palette indexes) at ``at`` (x, y) on a video of
    ``size`` (width, height); ``palette``: (index, Y, Cr, Cb, alpha) entries."""
    height, width = bitmap.shape
    coded = b"".join(_line(row) for row in bitmap)
    entries = b"".join(struct.pack(">5B", *entry) for entry in palette)
    obj = struct.pack(">HBB", 0, 0, _FIRST_AND_LAST) + (len(coded) + 4).to_bytes(3, "big")
    return [
        _composition(size, number, _EPOCH_START, [at]),
        _window(*at, width, height),
        _segment(_PDS, bytes([0, 0]) + entries),
        _segment(_ODS, obj + struct.pack(">HH", width, height) + coded),
        _segment(_END, b""),
    ]


def clear_set(at: tuple[int, int], box: tuple[int, int], size, number: int) -> list[bytes]:
    """The segments that take the subtitle in window ``at`` (x, y) of ``box`` (width, height) off."""
    return [_composition(size, number, _NORMAL, []), _window(*at, *box), _segment(_END, b"")]


def write_sup(path: Path, subtitles, at: tuple[int, int], size, palette) -> Path:
    """A ``.sup`` file with ``subtitles`` = [(start ms, duration ms, bitmap)], each shown and then
    cleared."""
    out = bytearray()
    for i, (start, duration, bitmap) in enumerate(subtitles):
        box = (bitmap.shape[1], bitmap.shape[0])
        sets = [
            (start, display_set(bitmap, at, size, 2 * i, palette)),
            (start + duration, clear_set(at, box, size, 2 * i + 1)),
        ]
        for when, segments in sets:
            ticks = when * 90
            for segment in segments:
                out += b"PG" + struct.pack(">II", ticks, ticks) + segment
    path.write_bytes(bytes(out))
    return path
