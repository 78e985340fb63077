"""Images in and out: whatever the user hands us becomes an HxWx3 uint8 RGB array, and files are
written so that an interrupted run never leaves a half-written picture behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_file

COLOR_ORDERS = ("rgb", "bgr")


def check_color(color: str) -> str:
    if color not in COLOR_ORDERS:
        raise InputError(f"color={color!r} is not one of {COLOR_ORDERS}: say the channel order of your array")
    return color


def to_rgb(image, color: str = "rgb") -> np.ndarray:
    """An HxWx3 uint8 RGB array from a numpy array (in ``color`` order), a PIL image or a path.

    Grayscale is repeated into three channels; an alpha channel is dropped (the colour channels are
    upscaled as they are stored, not premultiplied).
    """
    check_color(color)
    if isinstance(image, (str, os.PathLike)):
        return _pil_to_rgb(_open(Path(image)))
    if _is_pil(image):
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        rgb = _array_to_rgb(image)
        return rgb[..., ::-1] if color == "bgr" else rgb
    raise InputError(f"cannot read an image from {type(image).__name__}: pass an HxWx3 uint8 numpy array, a PIL.Image or a file path")


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        hint = " (scale 0..1 floats with (a * 255).round().astype(np.uint8))" if array.dtype.kind == "f" else ""
        raise InputError(f"image dtype is {array.dtype}; pass uint8 pixels 0..255{hint}")
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
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(image, Image.Image)


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path} is not an image Pillow can read ({exc}); convert it to PNG or JPEG") from exc


def _pil_to_rgb(img) -> np.ndarray:
    if img.mode.startswith("I"):
        # 16-bit grayscale (PNG stores it as "I;16" or "I"): keep the top 8 bits, as a viewer shows it.
        return _array_to_rgb((np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8))
    if img.mode != "RGB":
        # "LA"/"RGBA"/"PA" lose alpha here; "L"/"P"/"CMYK"/"F" become RGB the way Pillow defines it.
        img = img.convert("RGB")
    return _array_to_rgb(np.asarray(img))


def save_atomic(array: np.ndarray, path: Path, overwrite: bool = True) -> None:
    """Write an image so that ``path`` is either the old file or the whole new one, never a part."""
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the image format of {path}; use .png, .jpg, .bmp, .tif or .webp")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; remove it or choose another output")
    with atomic_file(path) as handle:
        Image.fromarray(array).save(handle, format=fmt)
