#!/usr/bin/env python
"""The memory budget against what a call really takes: planned peak vs peak RSS growth, per model.

    python benchmarks/budget.py --md benchmarks/results/budget.md --json benchmarks/results/budget.json
    python benchmarks/budget.py --smoke          # seconds; tests/test_benchmarks.py runs it

For each case (a model, a scale, an image size, a memory budget: the default, or a small one that forces
tiles) a fresh subprocess makes a Predictor on ort-cpu, warms it on a tiny image at the same scale (the
engine's session for that factor is made, the weights are in), makes a noise image, and then runs one
call. Its peak RSS growth is the kernel's high-water mark after the call (reset just before it through
/proc/self/clear_refs) minus the RSS before it: what the call itself took, measured in the child.
Beside it: the plan (whole or windows, batch), the planner's own estimate of the call's peak (the
footprint of one engine call of the plan, plus the result the windows are stitched into), what the
image would need in one piece, and the budget. Goal: growth within 1.1x the budget for every case. Floor: the
result's own bytes (H x W x 3 x scale^2, which any call must hold).

The bundled models (srcnn, srcnn3, espcn) and the community architectures exported by
benchmarks/devkit (Compact, SPAN, RRDB, SwinIR; made with torch on first use, skipped without it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (model, scale, (height, width), budget or None for the default)
CASES = [
    ("srcnn", 3, (256, 256), None),
    ("srcnn", 3, (512, 512), "64MiB"),
    ("srcnn3", 2, (256, 256), None),
    ("srcnn3", 2, (512, 512), "64MiB"),
    ("srcnn3", 2, (1600, 1600), None),
    ("srcnn3", 4, (512, 512), "256MiB"),
    ("espcn", 3, (256, 256), None),
    ("espcn", 3, (1024, 1024), "64MiB"),
    ("compact", 4, (128, 128), None),
    ("compact", 4, (384, 384), "64MiB"),
    ("span", 4, (128, 128), None),
    ("span", 4, (384, 384), "64MiB"),
    ("rrdb", 2, (128, 128), None),
    ("rrdb", 2, (512, 512), "256MiB"),
    ("swinir", 4, (96, 96), None),
    ("swinir", 4, (320, 320), "256MiB"),
]
SMOKE = [("srcnn3", 2, (64, 64), None), ("srcnn3", 2, (96, 96), "8MiB")]
ARCHS = ("compact", "span", "rrdb", "swinir")


def load_average() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


# -- the child: one call, measured from inside --------------------------------------------------------

CHILD = r"""
import ctypes, ctypes.util, gc, json, sys
import numpy as np

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

def settled():
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    rss = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the high-water mark starts again from here
    return rss

case = json.loads(sys.argv[1])
from sdk import Predictor, memory
p = Predictor(case["model"], backend="ort-cpu", pipeline=case["pipeline"])
scale, (height, width) = case["scale"], case["size"]
side = max(16, p.spec.multiple_of)
p(np.zeros((side, side, 3), np.uint8), scale=scale)
image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
plan = p.plan((height, width), scale)
found = p._planner.sizing(scale)[0]  # the footprint the planner sized this plan with
cut = (min(plan.window[0], height), min(plan.window[1], width))
items = min(plan.batch, plan.count(height, width))
result = height * width * scale * scale * 3
planned = found.peak(items, *cut) + (result if plan.tiled else 0)
before = settled()
out = p(image, scale=scale)
growth = status("VmHWM") - before
print(json.dumps({
    "budget": memory.budget(), "growth": growth, "planned": planned, "untiled": found.peak(1, height, width),
    "window": list(plan.window), "batch": items, "tiled": plan.tiled, "result": out.nbytes,
}))
"""


def pipelines(names) -> dict:
    """The pipeline each model runs with: None for the bundled ones, the devkit's declared one for the
    architectures (their exports carry no metadata), with the file exported on first use."""
    found = {}
    for name in names:
        if name not in ARCHS:
            found[name] = (name, None)
            continue
        try:
            from benchmarks.devkit.archs import ARCHS as DEVKIT
            from benchmarks.devkit.export import exported
        except ImportError as exc:  # torch is not installed: the architectures cannot be exported
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        found[name] = (str(exported(name)), DEVKIT[name].declared())
    return found


def run_case(model: str, pipeline, scale: int, size, budget) -> dict:
    env = dict(os.environ)
    env.pop("SDK_MEMORY_BUDGET", None)
    if budget:
        env["SDK_MEMORY_BUDGET"] = budget
    case = {"model": model, "pipeline": pipeline, "scale": scale, "size": list(size)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True, text=True, env=env, timeout=900
    )
    if done.returncode != 0:
        raise SystemExit(f"budget.py: {model} x{scale} {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def report(result: dict) -> str:
    lines = [
        "# The memory budget against a call's real peak (benchmarks/budget.py)",
        "",
        f"Command: `{result['command']}`  ",
        f"Load average (1, 5, 15 min) before: {result['load_before']}; after: {result['load_after']}  ",
        f"ort-cpu, {result['cpus']} CPUs; growth = peak RSS during one call minus RSS before it, in a fresh process.",
        "",
        "| model | scale | input | budget MiB | in one piece MiB | plan | planned MiB | growth MiB | growth / budget "
        "| result MiB (floor) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        plan = (
            f"windows {row['window'][0]}x{row['window'][1]}, batch {row['batch']}"
            if row["tiled"]
            else f"whole, batch {row['batch']}"
        )
        lines.append(
            f"| {row['model']} | x{row['scale']} | {row['size'][0]}x{row['size'][1]} | {mib(row['budget'])}"
            f"{'' if row['budget_set'] else ' (default)'} | {mib(row['untiled'])} | {plan} | {mib(row['planned'])} | {mib(row['growth'])} "
            f"| {row['growth'] / row['budget']:.2f} | {mib(row['result'])} |"
        )
    worst = max(row["growth"] / row["budget"] for row in result["rows"])
    lines += [
        "",
        f"Largest growth / budget: {worst:.2f}. Goal (every call within 1.1x its budget): "
        f"**{'met' if worst <= 1.1 else 'NOT met'}**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="two small srcnn3 cases")
    parser.add_argument("--only", nargs="*", help="models to run (default: all)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--md", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    cases = SMOKE if args.smoke else [c for c in CASES if not args.only or c[0] in args.only]
    models = pipelines(dict.fromkeys(c[0] for c in cases))
    result = {
        "command": "python benchmarks/budget.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_before": load_average(),
        "cpus": os.cpu_count(),
        "rows": [],
    }
    for name, scale, size, budget in cases:
        if name not in models:
            continue
        model, pipeline = models[name]
        row = run_case(model, pipeline, scale, size, budget)
        row.update(model=name, scale=scale, size=list(size), budget_set=budget is not None)
        print(json.dumps(row), file=sys.stderr)
        result["rows"].append(row)
    result["load_after"] = load_average()
    text = report(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
