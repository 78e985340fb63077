"""ONNX files of the community architectures, exported as their users export them.

    python -m benchmarks.devkit.export compact span rrdb swinir --out-dir build/archs

opset 17, dynamic batch, height and width, the TorchScript exporter (``dynamo=False``: the one the
community's conversion scripts use, and it writes the weights inside the file). The file name carries
a digest of the architecture source, the configuration and torch's version, so an edit to ``archs.py``
makes a new export instead of reusing a stale one.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

OPSET = 17
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "build" / "archs"


def _digest(name: str) -> str:
    import torch

    from . import archs

    text = Path(archs.__file__).read_bytes() + f"{name}|{OPSET}|{torch.__version__}".encode()
    return hashlib.sha256(text).hexdigest()[:12]


def exported(name: str, out_dir: Path = DEFAULT_DIR) -> Path:
    """The path of ``name``'s export, made now when it is not there yet."""
    from .archs import ARCHS

    if name not in ARCHS:
        raise SystemExit(f"unknown architecture {name!r}; choose from {sorted(ARCHS)}")
    path = Path(out_dir) / f"{name}-{_digest(name)}.onnx"
    if not path.is_file():
        export(name, path)
    return path


def export(name: str, path: Path) -> Path:
    import torch

    from .archs import ARCHS

    arch = ARCHS[name]
    module = arch.builder()
    side = 8 * max(arch.multiple_of, 4)
    sample = torch.rand(1, 3, side, side)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with torch.no_grad():
        torch.onnx.export(
            module,
            (sample,),
            str(partial),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "H", 3: "W"}},
            opset_version=OPSET,
            dynamo=False,
        )
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    from .archs import ARCHS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=sorted(ARCHS))
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    for name in args.names:
        print(exported(name, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
