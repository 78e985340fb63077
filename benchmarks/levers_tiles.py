#!/usr/bin/env python
"""Batching the windows of one tiled image: one engine call per window, or several windows per call?

    python benchmarks/levers_tiles.py --arch compact span rrdb swinir --size 256 --tile 64 --runs 3 \
        --md benchmarks/results/levers_tiles.md

When an image runs in windows (``tile=N``, or a memory budget that asks for them) and the model has a
dynamic batch axis, ``Predictor.plan`` puts up to 16 windows into one engine call. This measures
whether that wins over one window per call, per engine: one Predictor per engine, the same image run
with ``plan(..., max_batch=1)`` and with the default plan, the two taking turns call by call, each
call timed in wall time and in the process's CPU time (read CPU time on a shared machine: wall time
there is mostly the wait for a core). The pictures of the two plans are compared (uint8 max diff).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["compact", "span", "rrdb", "swinir"])
    parser.add_argument("--backends", nargs="+", default=["ort-cpu", "openvino", "mnn"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--md", help="write the tables as Markdown")
    args = parser.parse_args(argv)
    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.export import exported
    from sdk import Predictor
    from sdk.errors import BackendUnavailableError

    image = np.random.default_rng(0).integers(0, 256, (1, args.size, args.size, 3), dtype=np.uint8)
    lines = [
        f"A {args.size}x{args.size} image in windows of {args.tile} px (plus the margin the SDK derives), "
        f"{args.runs} interleaved calls per variant after 1 warm-up; load average at the start "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs. `vs one per call` = one window per engine call "
        "over the batched plan (above 1: batching is faster), in wall and in CPU time.",
        "",
    ]
    for name in args.arch:
        arch = ARCHS[name]
        path = exported(name)
        lines += [
            f"### {arch.title}",
            "",
            "| engine | windows per call | engine calls | CPU p50 ms | wall p50 ms | vs one per call (CPU) "
            "| vs one per call (wall) | max diff |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for backend in args.backends:
            try:
                predictor = Predictor(str(path), backend=backend, pipeline=arch.declared())
            except BackendUnavailableError as exc:
                lines.append(f"| {backend} | not run: {exc} | | | | | | |")
                continue
            with predictor:
                plans = {
                    "one": predictor.plan((args.size, args.size), tile=args.tile, max_batch=1),
                    "batched": predictor.plan((args.size, args.size), tile=args.tile),
                }
                pictures = {k: predictor.run_plan(image, None, plan) for k, plan in plans.items()}
                wall = {k: [] for k in plans}
                cpu = {k: [] for k in plans}
                for round_ in range(args.runs):
                    for key in list(plans)[round_ % 2 :] + list(plans)[: round_ % 2]:
                        started, used = time.perf_counter(), time.process_time()
                        predictor.run_plan(image, None, plans[key])
                        wall[key].append(time.perf_counter() - started)
                        cpu[key].append(time.process_time() - used)
                        time.sleep(0.1)
                diff = int(np.abs(pictures["one"].astype(np.int16) - pictures["batched"]).max())
                windows = plans["batched"].count(args.size, args.size)
                for key, plan in plans.items():
                    c, w = np.median(cpu[key]), np.median(wall[key])
                    c1, w1 = np.median(cpu["one"]), np.median(wall["one"])
                    lines.append(
                        f"| {backend} | {plan.batch} | {-(-windows // plan.batch)} | {c * 1e3:,.1f} | {w * 1e3:,.1f} "
                        f"| {c1 / c:.2f}x | {w1 / w:.2f}x | {diff if key == 'batched' else '-'} |"
                    )
            print("\n".join(lines[-2:]), flush=True)
        lines += [f"Load at the end {os.getloadavg()[0]:.2f}.", ""]
    text = "\n".join(lines)
    print(text)
    if args.md:
        from sdk.files import atomic_write

        atomic_write(args.md, "# Batching the windows of one image, measured\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
