"""What a video's numbers mean as colour: matrix, range, primaries, transfer and chroma siting.

Values are FFmpeg's own enumerations (AVColorSpace, AVColorRange, AVColorPrimaries,
AVColorTransferCharacteristic, AVChromaLocation), so they go to and from PyAV unchanged. A source
that leaves one unspecified gets FFmpeg's defaults (and players'): BT.601 below 720 lines, BT.709
from 720; limited range for YUV (full for the JPEG "yuvj" formats); chroma sited left (MPEG-2,
H.264, HEVC). The output is tagged with what was used, so a player shows it the same way even when
the upscaled picture crosses the 720-line line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

UNSPECIFIED = 2  # AVCOL_SPC/PRI/TRC_UNSPECIFIED
LIMITED, FULL = 1, 2  # AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG
BT709, BT601, BT2020 = 1, 5, 9  # AVCOL_SPC_BT709, AVCOL_SPC_BT470BG, AVCOL_SPC_BT2020_NCL
PQ, HLG = 16, 18  # AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67

# AVColorSpace -> (name, Kr, Kb): the luma weights that define each YCbCr matrix.
MATRICES = {
    1: ("bt709", 0.2126, 0.0722),
    4: ("fcc", 0.30, 0.11),
    5: ("bt601", 0.299, 0.114),  # BT.470BG (625 lines)
    6: ("bt601", 0.299, 0.114),  # SMPTE 170M (525 lines): the same matrix
    7: ("smpte240m", 0.212, 0.087),
    9: ("bt2020", 0.2627, 0.0593),
}
_UNSUPPORTED = {0: "RGB stored as YUV (GBR)", 8: "YCgCo", 10: "BT.2020 constant luminance", 14: "ICtCp"}
# AVChromaLocation -> where the first chroma sample sits, in luma samples, as a fraction of the
# subsampling step: (horizontal, vertical); 0 = on the first luma sample, 0.5 = between two.
SITINGS = {
    "left": (0.0, 0.5),
    "center": (0.5, 0.5),
    "topleft": (0.0, 0.0),
    "top": (0.5, 0.0),
    "bottomleft": (0.0, 1.0),
    "bottom": (0.5, 1.0),
}
CHROMA_LOCATIONS = {1: "left", 2: "center", 3: "topleft", 4: "top", 5: "bottomleft", 6: "bottom"}
_RANGES = {LIMITED: "limited", FULL: "full"}
TRANSFER_NAMES = {
    1: "BT.709",
    6: "BT.601",
    13: "sRGB",
    14: "BT.2020 10-bit",
    15: "BT.2020 12-bit",
    PQ: "PQ",
    HLG: "HLG",
}


@dataclass(frozen=True)
class Colorimetry:
    """How one video stream's samples map to colour; ``assumed`` names what the source left unsaid."""

    matrix: int = BT709
    range: int = LIMITED
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    chroma_location: str = "left"
    assumed: tuple[str, ...] = ()

    @property
    def full_range(self) -> bool:
        return self.range == FULL

    @property
    def luma_weights(self) -> tuple[float, float]:
        return MATRICES[self.matrix][1:]

    @property
    def hdr(self) -> str | None:
        return {PQ: "PQ (HDR10)", HLG: "HLG"}.get(self.transfer)

    def describe(self) -> str:
        name = MATRICES[self.matrix][0].upper().replace("BT", "BT.")
        return f"{name} {_RANGES[self.range]} range, chroma {self.chroma_location}"


def resolve(
    matrix: int, color_range: int, primaries: int, transfer: int, chroma_location: str | None, height: int, jpeg: bool
) -> Colorimetry:
    """A source's tags with FFmpeg's defaults filled in where it gives none.

    ``jpeg``: the pixel format is one of the full-range "yuvj" formats; ``height`` picks the matrix
    of an untagged source.
    """
    assumed = []
    if matrix in _UNSUPPORTED:
        raise InputError(
            f"the video's colour matrix is {_UNSUPPORTED[matrix]}, which the SDK cannot convert to RGB; convert "
            "it to BT.709 first (ffmpeg -vf colorspace=all=bt709)"
        )
    if matrix not in MATRICES:
        matrix = BT709 if height >= 720 else BT601
        assumed.append(f"matrix {MATRICES[matrix][0].upper().replace('BT', 'BT.')} ({height} lines)")
    if color_range not in _RANGES:
        color_range = FULL if jpeg else LIMITED
        assumed.append(f"{_RANGES[color_range]} range")
    if chroma_location not in SITINGS:
        chroma_location = "left"
        assumed.append("chroma sited left")
    return Colorimetry(matrix, color_range, primaries, transfer, chroma_location, tuple(assumed))
