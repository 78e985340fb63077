"""Encoded image bytes <-> pixels for the server: sdk.images does the reading and writing (EXIF
orientation, ICC profile, EXIF, alpha, as ``sdk upscale`` keeps them); this adds the pixel limit,
checked from the image header before decoding, so a decompression bomb (a small file that claims
billions of pixels) is refused before a byte of it is inflated.
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np

from .. import images
from ..errors import InputError
from .errors import bad_request, too_large, unprocessable

# Answer formats: query name -> (Pillow format, content type).
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_ALIASES = {"jpg": "jpeg"}
_FROM_PILLOW = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
# The server answers quickly rather than small. PNG goes through fpng (a PNG writer built for speed,
# in the serve extra): on the build machine a 192x192 result took 0.2 ms where Pillow at zlib level 1
# with the run-length strategy took 4.2 (and level 0, whose adaptive row filter still runs, 2.6), a
# 768x768 one 3.2 ms against 65, for files about a quarter larger than that Pillow setting.
# fpng writes pixels only, so an answer that carries the source's ICC profile, EXIF or alpha (and any
# answer where fpng is not installed) takes Pillow with the fastest of its settings.
_FAST = {"PNG": {"compress_level": 1, "compress_type": 3}}


def output_format(name: str | None, decoded_format: str | None = None) -> str:
    """The format to answer in: the one asked for, else the input's own, else PNG."""
    if name is None:
        return decoded_format or "png"
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in FORMATS:
        raise unprocessable(f"format={name!r} is not one of {sorted(FORMATS)}")
    return key


def decode(data: bytes, max_pixels: int) -> tuple[images.Decoded, str | None]:
    """(what sdk.images read, the input's format among FORMATS or None); HTTP errors for bad bytes."""
    header = open_header(data, max_pixels)
    return load(header), header.source_format


class Header:
    """An image whose header is read and whose size is within the limit; its pixels are not decoded."""

    def __init__(self, image, source_format: str | None):
        self.image = image
        self.source_format = source_format
        self.width, self.height = image.size


def open_header(data: bytes, max_pixels: int) -> Header:
    """Parse the header only (microseconds) and refuse a picture over ``max_pixels`` before a byte of
    it is inflated."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise bad_request("the request has no image: send the encoded image (PNG, JPEG, WebP ...) as the body")
    with warnings.catch_warnings():
        # Pillow warns (and past twice its own limit raises) about huge images; our limit comes first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))  # parses the header only
        except Image.DecompressionBombError as exc:
            raise too_large(
                f"the image is too large to decode ({exc}); this server takes at most {max_pixels} pixels"
            ) from None
        except UnidentifiedImageError:
            raise bad_request(
                f"the body ({len(data)} bytes) is not an image in a format Pillow reads; send PNG, JPEG or WebP bytes"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise bad_request(f"the image header is damaged ({exc}); send PNG, JPEG or WebP bytes") from None
    width, height = img.size
    if width * height > max_pixels:
        raise too_large(
            f"the image is {width}x{height} = {width * height} pixels; this server takes at most "
            f"{max_pixels} (--max-pixels); downscale it or split it"
        )
    return Header(img, _FROM_PILLOW.get(img.format or ""))


# What an image request holds besides the engine's windows and the stitched result (those are
# Predictor.plan's own), in bytes per input pixel and per result pixel. Decoding: Pillow's picture (it
# stores RGB as 4-byte pixels, and the request keeps it until the answer is sent), our RGB copy (3)
# and an alpha plane (1). Encoding: Pillow's 4-byte copy of the result where Pillow writes the answer.
DECODED_BYTES_PER_PIXEL = 4 + 3 + 1
PILLOW_BYTES_PER_PIXEL = 4


def held_bytes(request_bytes: int, data_bytes: int, header: Header, scale: int, fmt: str) -> int:
    """Bytes an image request holds while it runs besides what :meth:`sdk.Predictor.plan` counts (the
    engine's windows and the stitched result): what the server passes to the plan as ``held``, so that
    an image tiles smaller, or is refused with 413 before decoding, when the whole does not fit the
    memory budget. ``request_bytes``: the request's body where it carries more than this image (a /v2
    request), else 0; ``data_bytes``: this image's encoded bytes.

    - the encoded image, and as much again for what the decoder keeps of it besides pixels (Pillow
      keeps a PNG's private chunks and a JPEG's APP segments; the profile and EXIF go on to the answer);
    - the decoded picture (DECODED_BYTES_PER_PIXEL);
    - the answer: at most the raw result and its container (a PNG of noise is the raw bytes, a filter
      byte a row and zlib's stored-block headers: well under 1/64 more), plus Pillow's copy of the result
      where Pillow writes it (JPEG, WebP, and a PNG that carries a profile, EXIF or alpha, or when fpng
      is not installed).
    """
    result = header.height * header.width * scale * scale
    answer = 3 * result + 3 * result // 64
    if not (fmt == "png" and _fpng() is not None and not _header_carries_metadata(header)):
        answer += PILLOW_BYTES_PER_PIXEL * result
    return request_bytes + 2 * data_bytes + DECODED_BYTES_PER_PIXEL * header.height * header.width + answer


def _header_carries_metadata(header: Header) -> bool:
    """Whether the answer may carry a profile, EXIF or alpha (as _carries_metadata will say once the
    image is decoded), told from the header alone."""
    info = header.image.info
    return bool(
        info.get("icc_profile")
        or info.get("exif")
        or "transparency" in info
        or header.image.mode in ("RGBA", "LA", "PA")
    )


def load(header: Header) -> images.Decoded:
    """The pixels (and orientation, profile, EXIF, alpha) of an image whose header passed."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            header.image.load()
            return images.decode(header.image)
        except InputError as exc:
            raise bad_request(str(exc)) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise bad_request(f"the image is damaged and cannot be decoded ({exc})") from None


def check_size(fmt: str, height: int, width: int) -> None:
    """422 when the answer's format cannot hold a picture this large (WebP: 16383 pixels a side)."""
    try:
        images.check_fits_format(FORMATS[fmt][0], height, width, "ask for format=png or a smaller scale", "result")
    except InputError as exc:
        raise unprocessable(str(exc)) from None


def encode(pixels: np.ndarray, fmt: str, source: images.Decoded | None) -> tuple[bytes, str]:
    pil_format, content_type = FORMATS[fmt]
    if pil_format == "PNG" and not _carries_metadata(source):
        writer = _fpng()
        if writer is not None:
            data = writer.from_ndarray(np.ascontiguousarray(pixels))
            if data:  # empty where fpng refuses a picture (a side over 2**24 pixels): Pillow writes it
                return data, content_type
    try:
        return images.encode(pixels, pil_format, source, **_FAST.get(pil_format, {})), content_type
    except InputError as exc:
        raise unprocessable(str(exc)) from None


def quick_to_encode(fmt: str, source: images.Decoded | None) -> bool:
    """Whether ``encode`` takes about a millisecond at 256x256: PNG through fpng and JPEG do
    (0.4 and 1.2 ms on the build machine, busy), Pillow's PNG (an answer with a profile, EXIF or
    alpha) and WebP do not (9 and 12 ms)."""
    if fmt == "jpeg":
        return True
    return fmt == "png" and not _carries_metadata(source) and _fpng() is not None


def _carries_metadata(source: images.Decoded | None) -> bool:
    return source is not None and bool(source.icc_profile or source.exif or source.alpha is not None)


@functools.cache
def _fpng():
    """The fpng module, or None where it is not installed (the answer is then Pillow's)."""
    try:
        import fpng
    except ImportError:
        return None
    return fpng
