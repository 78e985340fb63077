#!/usr/bin/env python
"""Every backend side by side: speed, memory and accuracy against PyTorch (same as `sdk bench`).

    python benchmarks/compare.py --model srcnn3 --size 256 --scale 3 --batch 1 \
        --backends all --warmup 3 --runs 20 --json out.json --md out.md --plot out.png
    python benchmarks/compare.py --arch compact --size 128 256 512 ...

The logic lives in ``sdk.bench`` so that an installed package has it too; this script only makes it
runnable from a source checkout, and adds ``--arch NAME``: a community architecture from
``benchmarks/devkit`` (compact, span, rrdb, swinir), exported to ONNX as its users export it (cached
under build/archs), its pipeline declared (RGB, 0..1, its scale) and its PyTorch module as the torch rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from sdk.bench.options import add_arguments
    from sdk.errors import SDKError

    parser = argparse.ArgumentParser(prog="compare.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument(
        "--arch",
        default=None,
        help="a community architecture of benchmarks/devkit (compact, span, rrdb, swinir): replaces --model, "
        "declares its pipeline and runs its PyTorch module as the torch rows",
    )
    args = parser.parse_args(argv)
    if args.arch:
        _use_arch(args)
    from sdk.bench.compare import run_from_args

    try:
        return run_from_args(args)
    except SDKError as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 1


def _use_arch(args) -> None:
    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.export import exported

    if args.arch not in ARCHS:
        raise SystemExit(f"compare.py: error: unknown --arch {args.arch!r}; choose from {sorted(ARCHS)}")
    arch = ARCHS[args.arch]
    args.model = str(exported(arch.name))
    args.torch_module = f"{ROOT / 'benchmarks' / 'devkit' / 'archs.py'}:{arch.name}"
    declared = arch.declared()
    fields = {"color": "color", "value_range": "value_range", "scale": "pipeline_scale", "multiple_of": "multiple_of"}
    for field, attribute in fields.items():
        if field in declared and getattr(args, attribute, None) is None:
            setattr(args, attribute, declared[field])
    if not args.note:
        args.note = arch.title
    else:
        args.note = f"{arch.title}; {args.note}"


if __name__ == "__main__":  # spawned workers import this file again; they must not run it
    sys.exit(main())
