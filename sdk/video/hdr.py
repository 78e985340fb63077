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


@dataclass(frozen=True)
class HDR10:
    """Chromaticities (x, y) and luminances (cd/m²) exactly as the source's rationals say."""

    red: tuple[Fraction, Fraction] | None = None
    green: tuple[Fraction, Fraction] | None = None
    blue: tuple[Fraction, Fraction] | None = None
    white: tuple[Fraction, Fraction] | None = None
    max_luminance: Fraction | None = None
    min_luminance: Fraction | None = None
    max_cll: int | None = None
    max_fall: int | None = None

    @property
    def has_display(self) -> bool:
        return self.red is not None and self.max_luminance is not None

    @property
    def has_light_level(self) -> bool:
        return self.max_cll is not None

    def __bool__(self) -> bool:
        return self.has_display or self.has_light_level


def _ratio(num: int, den: int) -> Fraction | None:
    return Fraction(num, den) if den else None


def parse(side_data: tuple[tuple[str, bytes], ...]) -> HDR10:
    """The HDR10 metadata in (side data name, bytes) pairs, as sdk.video.source reads them off a frame."""
    found: dict = {}
    for name, raw in side_data:
        if name == MASTERING and len(raw) >= _MASTERING.size:
            v = _MASTERING.unpack_from(raw)
            pairs = [_ratio(v[i], v[i + 1]) for i in range(0, 20, 2)]
            # The encoders take the display whole (primaries and luminance) or not at all.
            if v[20] and v[21] and None not in pairs:
                found.update(red=tuple(pairs[0:2]), green=tuple(pairs[2:4]), blue=tuple(pairs[4:6]))
                found.update(white=tuple(pairs[6:8]), min_luminance=pairs[8], max_luminance=pairs[9])
        elif name == LIGHT_LEVEL and len(raw) >= _LIGHT.size:
            found["max_cll"], found["max_fall"] = _LIGHT.unpack_from(raw)
    return HDR10(**found)


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
    if hdr.has_display:

        def xy(pair):
            return f"({round(pair[0] * 50000)},{round(pair[1] * 50000)})"

        light = f"L({round(hdr.max_luminance * 10000)},{round(hdr.min_luminance * 10000)})"
        yield f"master-display=G{xy(hdr.green)}B{xy(hdr.blue)}R{xy(hdr.red)}WP{xy(hdr.white)}{light}"
    if hdr.has_light_level:
        yield f"max-cll={hdr.max_cll},{hdr.max_fall}"


def _svtav1(hdr: HDR10):
    # SVT-AV1 takes the same layout in plain decimals.
    if hdr.has_display:

        def xy(pair):
            return f"({float(pair[0]):.5f},{float(pair[1]):.5f})"

        light = f"L({float(hdr.max_luminance):.4f},{float(hdr.min_luminance):.4f})"
        yield f"mastering-display=G{xy(hdr.green)}B{xy(hdr.blue)}R{xy(hdr.red)}WP{xy(hdr.white)}{light}"
    if hdr.has_light_level:
        yield f"content-light={hdr.max_cll},{hdr.max_fall}"


def describe(hdr: HDR10) -> str:
    parts = []
    if hdr.has_display:
        parts.append(f"mastering display {float(hdr.min_luminance):g}..{float(hdr.max_luminance):g} cd/m²")
    if hdr.has_light_level:
        parts.append(f"MaxCLL {hdr.max_cll}, MaxFALL {hdr.max_fall}")
    return ", ".join(parts)
