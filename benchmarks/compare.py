#!/usr/bin/env python
"""Every backend side by side: speed, memory and accuracy against PyTorch (same as `sdk bench`).

    python benchmarks/compare.py --model srcnn3 --size 256 --scale 3 --batch 1 \
        --backends all --warmup 3 --runs 20 --json out.json --md out.md --plot out.png

The logic lives in ``sdk.bench`` so that an installed package has it too; this script only makes it
runnable from a source checkout.
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
    args = parser.parse_args(argv)
    from sdk.bench.compare import run_from_args

    try:
        return run_from_args(args)
    except SDKError as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # spawned workers import this file again; they must not run it
    sys.exit(main())
