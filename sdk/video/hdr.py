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
from collections.abc import Callable
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
    unread: tuple[str, ...] = ()  # side data the source has but that could not be read, and why

    def __bool__(self) -> bool:
        return self.display is not None or self.max_cll is not None


def parse(side_data: tuple[tuple[str, bytes], ...]) -> HDR10:
    """The HDR10 metadata in (side data name, bytes) pairs, as sdk.video.source reads them off a frame."""
    display, light, unread = None, (None, None), []
    for name, raw in side_data:
        layout = {MASTERING: _MASTERING, LIGHT_LEVEL: _LIGHT}.get(name)
        if layout is not None and len(raw) < layout.size:
            unread.append(f"{_NAMES[name]} (truncated: {len(raw)} of {layout.size} bytes)")
        elif name == MASTERING:
            v = _MASTERING.unpack_from(raw)
            # The encoders take the display whole (primaries and luminance) or not at all.
            if v[20] and v[21] and all(v[i] for i in range(1, 20, 2)):
                r = [Fraction(v[i], v[i + 1]) for i in range(0, 20, 2)]
                display = Display((r[0], r[1]), (r[2], r[3]), (r[4], r[5]), (r[6], r[7]), r[8], r[9])
            else:
                unread.append(f"{_NAMES[name]} (incomplete: it gives the primaries or the luminance, not both)")
        elif name == LIGHT_LEVEL:
            light = _LIGHT.unpack_from(raw)
    return HDR10(display, *light, unread=tuple(unread))


_NAMES = {MASTERING: "the mastering display", LIGHT_LEVEL: "the content light level"}


@dataclass(frozen=True)
class _Syntax:
    """How one encoder takes the metadata: its parameter option, the two keys, the number formats."""

    option: str
    display_key: str
    light_key: str
    chromaticity: Callable[[Fraction], str]
    luminance: Callable[[Fraction], str]


_SYNTAXES = {
    # x265 counts chromaticities in 0.00002 and luminance in 0.0001 cd/m² (the SEI's own units).
    "libx265": _Syntax(
        "x265-params", "master-display", "max-cll", lambda v: str(round(v * 50000)), lambda v: str(round(v * 10000))
    ),
    # SVT-AV1 takes plain decimals.
    "libsvtav1": _Syntax(
        "svtav1-params",
        "mastering-display",
        "content-light",
        lambda v: f"{float(v):.5f}",
        lambda v: f"{float(v):.4f}",
    ),
}


def encoder_options(hdr: HDR10, codec: str) -> dict[str, str] | None:
    """The encoder option that writes ``hdr`` with ``codec``; None when the encoder cannot carry it."""
    syntax = _SYNTAXES.get(codec)
    if syntax is None:
        return None
    parts = []
    if hdr.display:
        d = hdr.display

        def xy(p: Point) -> str:
            return f"({syntax.chromaticity(p[0])},{syntax.chromaticity(p[1])})"

        light = f"L({syntax.luminance(d.max_luminance)},{syntax.luminance(d.min_luminance)})"
        # Both list green first, as the SEI does.
        parts.append(f"{syntax.display_key}=G{xy(d.green)}B{xy(d.blue)}R{xy(d.red)}WP{xy(d.white)}{light}")
    if hdr.max_cll is not None:
        parts.append(f"{syntax.light_key}={hdr.max_cll},{hdr.max_fall}")
    return {syntax.option: ":".join(parts)}


def describe(hdr: HDR10) -> str:
    parts = []
    if hdr.display:
        low, high = float(hdr.display.min_luminance), float(hdr.display.max_luminance)
        parts.append(f"mastering display {low:g}..{high:g} cd/m²")
    if hdr.max_cll is not None:
        parts.append(f"MaxCLL {hdr.max_cll}, MaxFALL {hdr.max_fall}")
    return ", ".join(parts)
