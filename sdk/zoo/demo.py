"""``make demo``: upscale a photo with the bundled runtime-scale SRCNN at x2, x3 and x4.

For each scale the photo is shrunk (PIL bicubic, as in the benchmarks), then brought back both by
the model (through ``sdk.Predictor``) and by plain bicubic interpolation. Each result is written
beside the bicubic one, and the Y-PSNR of both against the original photo is printed.

    python -m sdk.zoo.demo --out out/demo [--photo camera | --image PATH] [--backend auto]

The default photo, scikit-image's "camera", is not one the models were trained on. Needs no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import SDKError
from ..images import save_atomic
from .imaging import crop_to_multiple, downscale, psnr_y, upscale

TRAINED_ON = {"astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"}


def load_photo(photo: str | None, image: Path | None) -> tuple[str, np.ndarray]:
    if image is not None:
        try:
            return image.stem, np.asarray(Image.open(image).convert("RGB"))
        except OSError as exc:
            raise SDKError(f"cannot read {image} as an image ({exc}); pass a PNG/JPEG/BMP file") from exc
    try:
        import skimage.data
    except ImportError:
        raise SDKError(
            "the demo photos come with scikit-image: pip install scikit-image, or pass --image PATH"
        ) from None
    loader = getattr(skimage.data, photo, None)
    if loader is None:
        raise SDKError(f"scikit-image has no photo {photo!r}; try camera, astronaut or coffee")
    pixels = np.asarray(loader())
    # Grayscale photos go through the RGB model as three equal channels.
    return photo, np.asarray(Image.fromarray(pixels).convert("RGB"))


def _labelled(image: np.ndarray, label: str) -> Image.Image:
    panel = Image.fromarray(image)
    draw = ImageDraw.Draw(panel)
    draw.rectangle((0, 0, 8 + 7 * len(label), 16), fill=(0, 0, 0))
    draw.text((4, 2), label, fill=(255, 255, 255))
    return panel


def side_by_side(panels: list[tuple[np.ndarray, str]]) -> Image.Image:
    height = max(p.shape[0] for p, _ in panels)
    width = sum(p.shape[1] for p, _ in panels) + 4 * (len(panels) - 1)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for pixels, label in panels:
        sheet.paste(_labelled(pixels, label), (x, 0))
        x += pixels.shape[1] + 4
    return sheet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--photo", default="camera", help="a scikit-image sample photo (default: camera)")
    parser.add_argument("--image", type=Path, default=None, help="use this image file instead")
    parser.add_argument("--model", default="srcnn3", help="bundled model name or .onnx path")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)

    from .. import Predictor

    try:
        name, photo = load_photo(args.photo, args.image)
        predictor = Predictor(args.model, backend=args.backend)
    except SDKError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    label = Path(args.model).stem
    note = " (a training photo: expect flattering figures)" if name in TRAINED_ON else ""
    print(f"{name} {photo.shape[1]}x{photo.shape[0]}{note}; {label} on {predictor.backend}")
    print(f"{'scale':>5}  {'input':>9}  {'bicubic':>8}  {label:>8}  gain (Y-PSNR dB)")
    for scale in args.scales:
        truth = crop_to_multiple(photo, scale)
        low = downscale(truth, scale)
        bicubic = upscale(low, scale)
        ours = predictor(low, scale=scale)
        p_bicubic, p_ours = psnr_y(truth, bicubic, scale), psnr_y(truth, ours, scale)
        save_atomic(low, args.out / f"{name}_x{scale}_input.png")
        save_atomic(bicubic, args.out / f"{name}_x{scale}_bicubic.png")
        save_atomic(ours, args.out / f"{name}_x{scale}_{label}.png")
        sheet = side_by_side(
            [
                (bicubic, f"bicubic x{scale} {p_bicubic:.2f} dB"),
                (ours, f"{label} x{scale} {p_ours:.2f} dB"),
                (truth, "original"),
            ]
        )
        save_atomic(np.asarray(sheet), args.out / f"{name}_x{scale}_compare.png")
        size = f"{low.shape[1]}x{low.shape[0]}"
        print(f"{'x' + str(scale):>5}  {size:>9}  {p_bicubic:8.2f}  {p_ours:8.2f}  {p_ours - p_bicubic:+.2f}")
    print(f"pictures in {args.out}/ (*_compare.png: bicubic | {label} | original)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
