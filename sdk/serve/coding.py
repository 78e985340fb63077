"""Encoded image bytes <-> pixels for the server, with the size limit checked before decoding.

The pixel limit is read from the image header (Pillow's ``open`` parses only the header), so a
decompression bomb (a small file that claims billions of pixels) is refused before a byte of it
is inflated.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .errors import bad_request, too_large, unprocessable

FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_ALIASES = {"jpg": "jpeg"}


@dataclass
class Decoded:
    rgb: np.ndarray  # H x W x 3 uint8, upright (EXIF orientation applied)
    format: str | None  # "png" | "jpeg" | "webp" when the input was one of them
    icc_profile: bytes | None


def output_format(name: str | None, decoded_format: str | None) -> str:
    """The format to answer in: the one asked for, else the input's own, else PNG."""
    if name is None:
        return decoded_format or "png"
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in FORMATS:
        raise unprocessable(f"format={name!r} is not one of {sorted(FORMATS)}")
    return key


def decode(data: bytes, max_pixels: int) -> Decoded:
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..images import to_rgb

    if not data:
        raise bad_request("the request has no image: send the encoded image (PNG, JPEG, WebP ...) as the body")
    with warnings.catch_warnings():
        # Pillow warns (and past twice its own limit raises) about huge images; our limit comes first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise too_large(f"the image is too large to decode ({exc}); the limit is {max_pixels} pixels") from None
        except UnidentifiedImageError:
            raise bad_request(f"the body ({len(data)} bytes) is not an image in a format Pillow reads; "
                              "send PNG, JPEG or WebP bytes") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise bad_request(f"the image header is damaged ({exc}); send PNG, JPEG or WebP bytes") from None
        width, height = img.size
        if width * height > max_pixels:
            raise too_large(f"the image is {width}x{height} = {width * height} pixels; this server takes at most "
                            f"{max_pixels} (--max-pixels); downscale it or split it")
        fmt = (img.format or "").lower()
        icc = img.info.get("icc_profile")
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, ValueError, SyntaxError) as exc:
            raise bad_request(f"the image is damaged and cannot be decoded ({exc})") from None
    source_format = {"png": "png", "jpeg": "jpeg", "mpo": "jpeg", "webp": "webp"}.get(fmt)
    try:
        rgb = to_rgb(img)
    except InputError as exc:
        raise bad_request(str(exc)) from None
    return Decoded(rgb, source_format, icc)


def encode(rgb: np.ndarray, fmt: str, icc_profile: bytes | None) -> tuple[bytes, str]:
    from PIL import Image

    pil_format, content_type = FORMATS[fmt]
    options = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt == "jpeg":
        options.update(quality=95, subsampling=0)
    elif fmt == "webp":
        options.update(quality=95, method=4)
    elif fmt == "png":
        options.update(compress_level=1)  # fast: the server's time goes to the model, not to zlib
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=pil_format, **options)
    return buffer.getvalue(), content_type
