"""Images in and out.

Whatever the user hands us (a numpy array, a PIL image, a path, bytes, an open file) becomes an
HxWx3 uint8 RGB array. A photo read from a file is turned upright (EXIF orientation) and keeps what a
viewer needs to show the result the same way: its ICC profile, the rest of its EXIF and its alpha
plane travel in a :class:`Decoded` record to :func:`save_atomic`, which writes the format the output's
extension names, atomically (a reader or a crash sees the old file or the whole new one).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .files import atomic_file

COLOR_ORDERS = ("rgb", "bgr")
# The one list of file suffixes the SDK treats as images (folder jobs, benchmarks).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Encoder settings per format: high enough that the upscaler's detail survives, chroma kept at full
# resolution (4:4:4) because subsampling would blur exactly what super-resolution adds. PNG at zlib
# level 3: nearly the size of level 6 at a fraction of the time on 100-megapixel outputs.
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"quality": 95, "method": 4},
    "PNG": {"compress_level": 3},
    "TIFF": {"compression": "tiff_deflate"},
}
_KEEPS_ICC = {"JPEG", "PNG", "WEBP", "TIFF"}
# TIFF keeps its EXIF in the same tag directory as its own structure (strip offsets, sizes): Pillow
# cannot write it back safely, and a TIFF's tags copied into a JPEG would be nonsense.
_KEEPS_EXIF = {"JPEG", "PNG", "WEBP"}
_KEEPS_ALPHA = {"PNG", "WEBP", "TIFF"}
# The largest side each format can store; a bigger output is refused before any work.
MAX_SIDE = {"JPEG": 65535, "WEBP": 16383, "PNG": 2**31 - 1, "TIFF": 2**32 - 1, "BMP": 2**31 - 1, "PPM": 2**31 - 1}
_ORIENTATION = 0x0112
_EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x8769, 0xA002, 0xA003


@dataclass
class Decoded:
    """A picture as read from a file: upright RGB pixels plus what the writer carries over.

    icc_profile: the source's RGB ICC profile (None when it had none, or when the pixels were
        converted to sRGB from a grey or CMYK profile).
    exif: the source's EXIF without its orientation tag (the pixels are already upright) and
        without its pixel dimensions (they change), or None.
    alpha: the HxW uint8 alpha plane of an image that had one, else None.
    """

    pixels: np.ndarray
    icc_profile: bytes | None = None
    exif: bytes | None = None
    alpha: np.ndarray | None = None


def check_color(color: str) -> str:
    if color not in COLOR_ORDERS:
        raise InputError(f"color={color!r} is not one of {COLOR_ORDERS}: say the channel order of your array")
    return color


def to_rgb(image, color: str = "rgb", orient: bool = True) -> np.ndarray:
    """An HxWx3 RGB array from a numpy array (in ``color`` order; uint8, or uint16 kept 16-bit), a PIL
    image, a path, bytes or a binary file object (read as 8 bits).

    Grayscale is repeated into three channels; an alpha channel is dropped (the colour channels are
    upscaled as they are stored, not premultiplied). Files and PIL images are turned upright by their
    EXIF orientation unless ``orient=False``.
    """
    check_color(color)
    if isinstance(image, np.ndarray):
        rgb = _array_to_rgb(image)
        return rgb[..., ::-1] if color == "bgr" else rgb
    return decode(image, orient=orient).pixels


def decode(source, orient: bool = True) -> Decoded:
    """Read a path, bytes, a binary file object or a PIL image into a :class:`Decoded` record."""
    if _is_pil(source):
        return _decode_pil(source, orient)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"image file {str(path)!r} does not exist")
        return _decode_pil(_open(path, str(path)), orient)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_pil(_open(io.BytesIO(bytes(source)), f"{len(source)} bytes of image data"), orient)
    if hasattr(source, "read"):
        return _decode_pil(_open(source, getattr(source, "name", "the file object")), orient)
    raise InputError(
        f"cannot read an image from {type(source).__name__}: pass an HxWx3 uint8 numpy array, a PIL.Image, "
        "a file path, bytes or a binary file object"
    )


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """An array as HxWx3 pixels: uint8 (0..255) and uint16 (0..65535, kept 16-bit) are taken."""
    if array.dtype not in (np.uint8, np.uint16):
        if array.dtype.kind == "f":
            hint = " (scale 0..1 floats with (a * 255).round().astype(np.uint8), or * 65535 to uint16)"
        elif array.dtype.kind in "iu":
            hint = " (10- or 12-bit samples: shift them up to 16 bits, e.g. (a << 6).astype(np.uint16) for 10-bit)"
        else:
            hint = ""
        raise InputError(f"image dtype is {array.dtype}; pass uint8 pixels 0..255 or uint16 pixels 0..65535{hint}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"image shape is {array.shape}; pass HxW (grayscale), HxWx3 or HxWx4 (alpha is dropped)")
    elif array.shape[2] == 4:
        array = array[..., :3]
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"image is empty (shape {array.shape}); pass at least one pixel")
    return array


def _is_pil(image) -> bool:
    from PIL import Image

    return isinstance(image, Image.Image)


def _open(source, label: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(source)
        img.load()
        return img
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"{label} is larger than Pillow's safety limit against decompression bombs ({exc}); if you trust "
            "the file, raise the limit: PIL.Image.MAX_IMAGE_PIXELS = None"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # Pillow's decoders raise all of these for truncated or forged files.
        raise InputError(f"{label} is not an image Pillow can read ({exc}); convert it to PNG or JPEG") from exc


def _decode_pil(img, orient: bool) -> Decoded:
    from PIL import ImageOps

    try:
        exif = img.getexif() if img.format != "TIFF" else None
    except Exception:  # a broken EXIF block must not cost the picture
        exif = None
    if orient and img.format == "TIFF" and img.getexif().get(_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    if orient and exif is not None and exif.get(_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    icc = img.info.get("icc_profile") or None
    alpha = None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA"))[..., 3].copy()
    pixels, icc = _pil_pixels(img, icc)
    return Decoded(pixels=pixels, icc_profile=icc, exif=_exif_without_geometry(exif, orient), alpha=alpha)


def _pil_pixels(img, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """RGB uint8 pixels and the profile that describes them."""
    if img.mode.startswith("I"):
        # 16-bit grayscale (PNG stores it as "I;16" or "I"): keep the top 8 bits, as a viewer shows it.
        gray = (np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return _array_to_rgb(gray), None
    if icc and _profile_space(icc) not in ("RGB", None) and img.mode in ("L", "LA", "CMYK"):
        # A grey or CMYK profile cannot describe RGB pixels: convert through it to sRGB instead.
        converted = _to_srgb(img, icc)
        if converted is not None:
            return _array_to_rgb(np.asarray(converted)), None
        icc = None
    if img.mode != "RGB":
        # "LA"/"RGBA"/"PA" lose alpha here (it travels in Decoded.alpha); "L"/"P"/"CMYK"/"F" become RGB
        # the way Pillow defines it.
        img = img.convert("RGB")
        if icc and _profile_space(icc) != "RGB":
            icc = None
    return _array_to_rgb(np.asarray(img)), icc


def _profile_space(icc: bytes) -> str | None:
    """The colour space an ICC profile describes ("RGB", "GRAY", "CMYK"), or None if unreadable."""
    # Bytes 16..20 of every ICC profile name its data colour space.
    return icc[16:20].decode("ascii", "replace").strip() if len(icc) >= 20 else None


def _to_srgb(img, icc: bytes):
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "CMYK" if img.mode == "CMYK" else "L"
        return ImageCms.profileToProfile(img.convert(mode), source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:  # no littleCMS, or a broken profile: Pillow's plain conversion is the fallback
        return None


def _exif_without_geometry(found, oriented: bool) -> bytes | None:
    from PIL import Image

    if found is None or not len(found):
        return None
    try:
        exif = Image.Exif()  # a copy: the caller's PIL image keeps its own EXIF untouched
        exif.load(found.tobytes())
        if oriented:
            exif.pop(_ORIENTATION, None)
        sub = exif.get_ifd(_EXIF_IFD)
        sub.pop(_PIXEL_X, None)
        sub.pop(_PIXEL_Y, None)
        data = exif.tobytes()
    except Exception:
        return None
    return data or None


def output_format(path: Path) -> str:
    """The Pillow format named by an output's extension, or an InputError naming the choices."""
    from PIL import Image

    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the image format of {path}; use .png, .jpg, .bmp, .tif or .webp")
    return fmt


def check_fits_format(fmt: str, height: int, width: int, fix: str, what: str = "picture") -> None:
    """InputError (ending in ``fix``) when Pillow's format ``fmt`` cannot hold a height x width
    ``what``: the one check of MAX_SIDE, for files and the server's answers alike."""
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(height, width) > limit:
        raise InputError(f"a {width}x{height} {what} does not fit in {fmt} (at most {limit} pixels a side); {fix}")


def check_writable_size(path: Path, height: int, width: int) -> None:
    """InputError when the output's format cannot hold a picture this large (JPEG: 65535 px a side)."""
    try:
        check_fits_format(output_format(path), height, width, "write .png or .tif instead, or use a smaller scale")
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def save_atomic(array: np.ndarray, path: Path, overwrite: bool = True, source: Decoded | None = None) -> None:
    """Write an image so that ``path`` is either the old file or the whole new one, never a part.

    With ``source`` (what :func:`decode` read), its ICC profile and EXIF are written where the format
    allows, and its alpha plane, upscaled bicubically to the output's size, where the format has one.
    """
    path = Path(path)
    fmt = output_format(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; remove it or choose another output")
    picture, options = _picture(array, fmt, source)
    with atomic_file(path) as handle:
        try:
            picture.save(handle, format=fmt, **options)
        except (ValueError, RuntimeError) as exc:  # Pillow's encoders refusing a size or a tag
            raise InputError(f"cannot write {path} as {fmt}: {exc}") from exc


def encode(array: np.ndarray, fmt: str, source: Decoded | None = None, **options) -> bytes:
    """The encoded bytes of a picture in Pillow format ``fmt`` ("PNG", "JPEG", "WEBP" ...), carrying
    ``source``'s profile, EXIF and alpha as :func:`save_atomic` does (the server answers with these)."""
    picture, defaults = _picture(array, fmt, source)
    buffer = io.BytesIO()
    try:
        picture.save(buffer, format=fmt, **{**defaults, **options})
    except (ValueError, RuntimeError, OSError) as exc:
        raise InputError(f"cannot encode a {array.shape[1]}x{array.shape[0]} picture as {fmt}: {exc}") from exc
    return buffer.getvalue()


def _picture(array: np.ndarray, fmt: str, source: Decoded | None):
    """The PIL picture and encoder options for writing ``array`` as ``fmt``, with what ``source`` carries."""
    from PIL import Image

    picture = Image.fromarray(array)
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if source is not None:
        if source.icc_profile and fmt in _KEEPS_ICC:
            options["icc_profile"] = source.icc_profile
        if source.exif and fmt in _KEEPS_EXIF:
            options["exif"] = source.exif
        if source.alpha is not None and fmt in _KEEPS_ALPHA:
            alpha = Image.fromarray(source.alpha).resize(picture.size, Image.Resampling.BICUBIC)
            picture.putalpha(alpha)
    return picture, options
