"""HDR10's static metadata: read from the source's frames, written by the encoders that can carry it.

A PQ video's mastering display (the primaries, white point and luminance range it was graded on) and
its content light levels (MaxCLL, MaxFALL) tell a player how to map it onto a screen; without them a
player guesses, and highlights clip or the picture dims. FFmpeg decoders give them as frame side data
(AVMasteringDisplayMetadata, AVContentLightMetadata); the encoders take them only as their own
parameters (PyAV cannot hand frame side data to an encoder), so they are written here in each
encoder's syntax: x265's SEI messages and SVT-AV1's metadata OBUs, which decoders read back as the
same side data. Other encoders (x264, VP9, FFV1) have no place for them: the job says so in a warning.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

MASTERING = "MASTERING_DISPLAY_METADATA"
LIGHT_LEVEL = "CONTENT_LIGHT_LEVEL"

# AVMasteringDisplayMetadata: display_primaries[3][2] (R, G, B; x, y), white_point[2], min_luminance,
# max_luminance, each an AVRational (two int32); then has_primaries, has_luminance (int).
_MASTERING = struct.Struct("<22i")
_LIGHT = struct.Struct("<2I")  # AVContentLightMetadata: MaxCLL, MaxFALL (cd/m²)


Point = tuple[Fraction, Fraction]  # a chromaticity (x, y)


@dataclass(frozen=True)
class Display:
    """The mastering display: its primaries and white point, its luminance range in cd/m²."""

    red: Point
    green: Point
    blue: Point
    white: Point
    min_luminance: Fraction
    max_luminance: Fraction


@dataclass(frozen=True)
class HDR10:
    """HDR10's static metadata exactly as the source's rationals say; None where it gives none."""

    display: Display | None = None
    max_cll: int | None = None  # cd/m²
    max_fall: int | None = None

    def __bool__(self) -> bool:
        return self.display is not None or self.max_cll is not None


def parse(side_data: tuple[tuple[str, bytes], ...]) -> HDR10:
    """The HDR10 metadata in (side data name, bytes) pairs, as sdk.video.source reads them off a frame."""
    display, light = None, (None, None)
    for name, raw in side_data:
        if name == MASTERING and len(raw) >= _MASTERING.size:
            v = _MASTERING.unpack_from(raw)
            # The encoders take the display whole (primaries and luminance) or not at all.
            if v[20] and v[21] and all(v[i] for i in range(1, 20, 2)):
                r = [Fraction(v[i], v[i + 1]) for i in range(0, 20, 2)]
                display = Display((r[0], r[1]), (r[2], r[3]), (r[4], r[5]), (r[6], r[7]), r[8], r[9])
        elif name == LIGHT_LEVEL and len(raw) >= _LIGHT.size:
            light = _LIGHT.unpack_from(raw)
    return HDR10(display, *light)


def encoder_options(hdr: HDR10, codec: str) -> dict[str, str] | None:
    """The encoder option that writes ``hdr`` with ``codec``; None when the encoder cannot carry it."""
    if codec == "libx265":
        return {"x265-params": ":".join(_x265(hdr))}
    if codec == "libsvtav1":
        return {"svtav1-params": ":".join(_svtav1(hdr))}
    return None


def _x265(hdr: HDR10):
    # x265 counts chromaticities in 0.00002 and luminance in 0.0001 cd/m² (the SEI's own units),
    # and lists green first.
    if hdr.display:
        d = hdr.display

        def xy(p: Point) -> str:
            return f"({round(p[0] * 50000)},{round(p[1] * 50000)})"

        light = f"L({round(d.max_luminance * 10000)},{round(d.min_luminance * 10000)})"
        yield f"master-display=G{xy(d.green)}B{xy(d.blue)}R{xy(d.red)}WP{xy(d.white)}{light}"
    if hdr.max_cll is not None:
        yield f"max-cll={hdr.max_cll},{hdr.max_fall}"


def _svtav1(hdr: HDR10):
    # SVT-AV1 takes the same layout in plain decimals.
    if hdr.display:
        d = hdr.display

        def xy(p: Point) -> str:
            return f"({float(p[0]):.5f},{float(p[1]):.5f})"

        light = f"L({float(d.max_luminance):.4f},{float(d.min_luminance):.4f})"
        yield f"mastering-display=G{xy(d.green)}B{xy(d.blue)}R{xy(d.red)}WP{xy(d.white)}{light}"
    if hdr.max_cll is not None:
        yield f"content-light={hdr.max_cll},{hdr.max_fall}"


def describe(hdr: HDR10) -> str:
    parts = []
    if hdr.display:
        low, high = float(hdr.display.min_luminance), float(hdr.display.max_luminance)
        parts.append(f"mastering display {low:g}..{high:g} cd/m²")
    if hdr.max_cll is not None:
        parts.append(f"MaxCLL {hdr.max_cll}, MaxFALL {hdr.max_fall}")
    return ", ".join(parts)
