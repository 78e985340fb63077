"""DVD subtitle (SPU) packets, built here: PyAV encodes text subtitles only, so a test that needs a
bitmap subtitle track writes its packets itself and muxes them as FFmpeg's ``dvd_subtitle`` codec.

The format (a subpicture unit, as DVD players and FFmpeg's dvdsub decoder read it):

- a header: the unit's size and the offset of its first control sequence (16 bits each, big-endian);
- the bitmap, 2 bits a pixel, run-length coded line by line, the even lines (top field) first and
  then the odd ones; each line ends on a byte boundary. A run is 1, 2, 3 or 4 nibbles long
  (``count << 2 | colour``, with leading zero nibbles marking the longer forms);
- control sequences, each with a delay (in units of 1024/90000 s) and the offset of the next one:
  here one at delay 0 that sets the palette indexes, the contrast (alpha), the display area, where
  the two fields start, and starts the display; and one at the end time that stops it (the last
  sequence points at itself).
"""

from __future__ import annotations

import struct

import numpy as np

_START, _STOP, _COLOURS, _CONTRAST, _AREA, _FIELDS, _END = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0xFF


def _run(count: int, colour: int) -> list[int]:
    """The nibbles of one run of ``count`` pixels (1..255) of ``colour`` (0..3)."""
    value = count << 2 | colour
    if count < 4:
        return [value]
    if count < 16:
        return [value >> 4, value & 15]
    if count < 64:
        return [0, value >> 4, value & 15]
    return [0, value >> 8, value >> 4 & 15, value & 15]


def _line(pixels: np.ndarray) -> bytes:
    nibbles: list[int] = []
    start = 0
    while start < len(pixels):
        stop = start + 1
        while stop < len(pixels) and pixels[stop] == pixels[start] and stop - start < 255:
            stop += 1
        nibbles += _run(stop - start, int(pixels[start]))
        start = stop
    if len(nibbles) % 2:
        nibbles.append(0)  # the line ends on a byte boundary
    return bytes(high << 4 | low for high, low in zip(nibbles[::2], nibbles[1::2]))


def _delay(milliseconds: int) -> int:
    return round(milliseconds * 90 / 1024)


def packet(bitmap: np.ndarray, x: int, y: int, duration_ms: int, colours=(0, 1, 2, 3), alpha=(0, 15, 15, 15)) -> bytes:
    """One subpicture: ``bitmap`` (H x W of pixel values 0..3) at (x, y), shown for ``duration_ms``.

    ``colours`` and ``alpha`` give, for pixel values 0..3, the index into the track's 16-colour
    palette and the opacity (0 transparent .. 15 opaque).
    """
    height, width = bitmap.shape
    top = b"".join(_line(row) for row in bitmap[0::2])
    bottom = b"".join(_line(row) for row in bitmap[1::2])
    first = 4 + len(top) + len(bottom)  # where the control sequences start

    def nibbles(values) -> bytes:
        return bytes([values[3] << 4 | values[2], values[1] << 4 | values[0]])

    area = struct.pack(">I", x << 12 | (x + width - 1))[1:] + struct.pack(">I", y << 12 | (y + height - 1))[1:]
    show = (
        bytes([_COLOURS])
        + nibbles(colours)
        + bytes([_CONTRAST])
        + nibbles(alpha)
        + bytes([_AREA])
        + area
        + bytes([_FIELDS])
        + struct.pack(">HH", 4, 4 + len(top))
        + bytes([_START, _END])
    )
    second = first + 4 + len(show)
    sequences = struct.pack(">HH", 0, second) + show
    sequences += struct.pack(">HH", _delay(duration_ms), second) + bytes([_STOP, _END])
    body = top + bottom + sequences
    return struct.pack(">HH", 4 + len(body), first) + body


def palette_option(colours) -> str:
    """The dvdsub encoder's ``palette`` option (16 RRGGBB values): it writes the track's header
    (the VobSub .idx lines Matroska keeps as the codec's private data)."""
    return ",".join(f"{r:02x}{g:02x}{b:02x}" for r, g, b in colours)
