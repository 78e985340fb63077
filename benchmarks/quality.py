#!/usr/bin/env python
"""Y-channel PSNR of our models against bicubic on a folder of images (Set5 by default protocol).

Protocol of the SRCNN paper and its successors: the high-resolution image is cropped to a multiple
of the scale, the low-resolution input is its bicubic downscale (PIL, antialiased), PSNR is computed
on BT.601 studio-range Y with ``scale`` pixels cropped from every border, and averaged over the
images. Models run through ``sdk.Predictor`` - the product's own pre/post-processing - on the
backend given (ONNX Runtime CPU by default), so the figures are what a user gets.

    python benchmarks/quality.py --data ../shared/data/Set5 --out benchmarks/results/quality_set5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from sdk.errors import SDKError  # noqa: E402
from sdk.files import atomic_write  # noqa: E402
from sdk.images import IMAGE_SUFFIXES  # noqa: E402
from sdk.model import BUNDLED  # noqa: E402
from sdk.zoo.imaging import crop_to_multiple, downscale, psnr_y, upscale  # noqa: E402

# Published Set5 figures (Dong et al., TPAMI 2015; MATLAB bicubic), for orientation beside ours.
PUBLISHED = {
    "paper: bicubic (MATLAB)": {2: 33.66, 3: 30.39, 4: 28.42},
    "paper: SRCNN 9-5-5, ImageNet": {2: 36.66, 3: 32.75, 4: 30.49},
    "paper: SRCNN 9-1-5, 91 images": {3: 32.39},
}


@dataclass
class Row:
    method: str
    per_scale: dict[int, float] = field(default_factory=dict)  # mean PSNR
    per_image: dict[int, dict[str, float]] = field(default_factory=dict)
    source: str = ""


def load_images(folder: Path) -> dict[str, np.ndarray]:
    if not folder.is_dir():
        raise SystemExit(f"quality.py: {folder} is not a folder; pass --data DIR, a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"quality.py: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    images = {}
    for path in files:
        try:
            images[path.name] = np.asarray(Image.open(path).convert("RGB"))
        except OSError as exc:
            raise SystemExit(f"quality.py: cannot read {path} ({exc}); remove it from the folder") from None
    return images


def degrade(images: dict[str, np.ndarray], scale: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (ground truth cropped to a multiple of scale, its bicubic downscale)."""
    pairs = {}
    for name, image in images.items():
        truth = crop_to_multiple(image, scale)
        if min(truth.shape[:2]) < 3 * scale:
            continue  # nothing would be left after cropping the borders
        pairs[name] = (truth, downscale(truth, scale))
    return pairs


def measure(method: str, upscaler, images, scales, source="") -> Row:
    row = Row(method, source=source)
    for scale in scales:
        pairs = degrade(images, scale)
        if upscaler is None or not upscaler.serves(scale):
            continue
        scores = {name: psnr_y(truth, upscaler(low, scale), border=scale) for name, (truth, low) in pairs.items()}
        row.per_image[scale] = scores
        row.per_scale[scale] = float(np.mean(list(scores.values())))
    return row


class Bicubic:
    def serves(self, scale: int) -> bool:
        return True

    def __call__(self, low: np.ndarray, scale: int) -> np.ndarray:
        return upscale(low, scale)


class Model:
    def __init__(self, model: str, backend: str, options: dict | None = None):
        from sdk import Predictor

        self.predictor = Predictor(model, backend=backend, **(options or {}))

    def serves(self, scale: int) -> bool:
        fixed = self.predictor.scale
        return fixed is None or fixed == scale

    def __call__(self, low: np.ndarray, scale: int) -> np.ndarray:
        return self.predictor(low, scale=scale)


def model_source(model: str) -> str:
    from sdk.model import model_file

    path = model_file(model)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path.name} sha256:{digest}"


def table(rows: list[Row], scales, baseline: Row) -> str:
    head = "| method | " + " | ".join(f"x{s} PSNR (gain)" for s in scales) + " |"
    lines = [head, "|" + "---|" * (len(scales) + 1)]
    for row in rows:
        cells = []
        for s in scales:
            if s not in row.per_scale:
                cells.append("-")
            elif row is baseline or s not in baseline.per_scale:
                cells.append(f"{row.per_scale[s]:.2f}")
            else:
                cells.append(f"{row.per_scale[s]:.2f} ({row.per_scale[s] - baseline.per_scale[s]:+.2f})")
        lines.append(f"| {row.method} | " + " | ".join(cells) + " |")
    for name, figures in PUBLISHED.items():
        paper_bicubic = PUBLISHED["paper: bicubic (MATLAB)"]
        cells = []
        for s in scales:
            if s not in figures:
                cells.append("-")
            elif figures is paper_bicubic:
                cells.append(f"{figures[s]:.2f}")
            else:
                cells.append(f"{figures[s]:.2f} ({figures[s] - paper_bicubic[s]:+.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of ground-truth images")
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(BUNDLED),
        help="bundled model names or .onnx paths (default: the bundled three)",
    )
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--backend", default="ort-cpu", help="SDK backend to run the models on")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="BACKEND:KEY=VALUE[,KEY=VALUE]",
        help="also run every model on BACKEND with these Predictor options, e.g. "
        "ort-cpu:precision=int8 or openvino:precision=bf16: the cost of an opt-in (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None, metavar="PREFIX", help="also write PREFIX.md and PREFIX.json")
    args = parser.parse_args(argv)

    if any(scale < 2 for scale in args.scales):
        parser.error(f"--scales {args.scales}: each scale must be a whole number >= 2")
    images = load_images(args.data)
    baseline = measure("bicubic (PIL)", Bicubic(), images, args.scales)
    rows = [baseline]
    for model in args.models:
        try:
            rows.append(measure(model, Model(model, args.backend), images, args.scales, source=model_source(model)))
        except SDKError as exc:
            raise SystemExit(f"quality.py: {model}: {exc}") from None
        for text in args.variant:
            from sdk.bench.compare import parse_variant

            try:
                backend, options = parse_variant(text)
                label = f"{model} on {backend}, " + ", ".join(f"{k}={v}" for k, v in options)
                rows.append(
                    measure(
                        label, Model(model, backend, dict(options)), images, args.scales, source=model_source(model)
                    )
                )
            except SDKError as exc:
                raise SystemExit(f"quality.py: {model} --variant {text}: {exc}") from None
    text = table(rows, args.scales, baseline)
    header = (
        f"Y-PSNR (dB) on {args.data.name} ({len(images)} images), gain over PIL bicubic in "
        f"brackets; models run by sdk.Predictor on {args.backend}. Published figures use "
        "MATLAB's bicubic, whose baseline differs slightly from PIL's."
    )
    print(header)
    print()
    print(text)
    if args.out is not None:
        import sdk

        sources = "\n".join(f"- {r.method}: {r.source}" for r in rows if r.source)
        atomic_write(args.out.with_suffix(".md"), f"{header}\n\n{text}\n\nModels:\n{sources}\n")
        record = {
            "data": args.data.name,
            "images": sorted(images),
            "backend": args.backend,
            "sdk": sdk.__version__,
            "python": platform.python_version(),
            "protocol": "BT.601 Y (16..235), scale-pixel border cropped, PIL bicubic LR",
            "rows": [
                {
                    "method": r.method,
                    "source": r.source,
                    "psnr": {str(k): v for k, v in r.per_scale.items()},
                    "per_image": {str(k): v for k, v in r.per_image.items()},
                }
                for r in rows
            ],
            "published": {k: {str(s): v for s, v in f.items()} for k, f in PUBLISHED.items()},
        }
        atomic_write(args.out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
        print(f"\nwrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
