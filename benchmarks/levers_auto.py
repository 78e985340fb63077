#!/usr/bin/env python
"""Does ``backend="auto"`` pick the fastest engine for the workload? Its trial, then the engines side by side.

    python benchmarks/levers_auto.py --arch compact span rrdb swinir --size 256 --runs 4 \
        --md benchmarks/results/levers_auto.md

For each architecture: a Predictor with ``backend="auto"`` runs its trial (a fresh ranking cache, so
it really measures) and says which engine it took, on which clock (sdk.tuning: wall time, or CPU time
per call on a busy machine). Then every engine that could run the model gets a bare session on the
graph the SDK gives it (sdk.optimize), fed the same --size tensor; the engines take turns call by call
(rotating order, a pause between calls so that spinning thread pools go quiet), each call timed in
wall time and in the process's CPU time. The goal: auto's choice within 5% of the fastest engine at
the workload's size. On a machine shared with other jobs read the CPU-time columns: wall time there
is mostly the wait for a core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WITHIN = 0.05  # the goal: auto's choice at most this much slower than the fastest engine


def auto_choice(path: Path, declared: dict) -> tuple[str, dict]:
    """The engine auto takes for the model and its ranking, measured now (a cache of its own)."""
    from sdk import Predictor

    saved = os.environ.get("SDK_CACHE_DIR")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["SDK_CACHE_DIR"] = scratch
        try:
            with Predictor(str(path), pipeline=declared, tune=True) as predictor:
                return predictor.backend, predictor.ranking.to_dict() if predictor.ranking else {}
        finally:
            if saved is None:
                os.environ.pop("SDK_CACHE_DIR", None)
            else:
                os.environ["SDK_CACHE_DIR"] = saved


def engines(path: Path) -> dict:
    """name -> a bare engine call on the SDK's optimised graph, for every CPU engine that runs here."""
    from sdk.devices import Device
    from sdk.model import Model
    from sdk.optimize import optimized_model
    from sdk.plugins import load_plugins

    model = Model(str(path))
    target = optimized_model(model) or model
    runners = {}
    for record in load_plugins().by_priority():
        backend = record.backend
        if "cpu" not in backend.devices or not backend.probe(Device("cpu")).ok:
            continue
        runner = backend.raw_runner(target, Device("cpu"), {})
        if runner is not None:
            runners[backend.name] = runner
    return runners


def measure(runners: dict, feeds: dict, runs: int) -> tuple[dict, dict]:
    for runner in runners.values():
        runner.run(feeds)  # warm-up
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    names = list(runners)
    for round_ in range(runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started, used = time.perf_counter(), time.process_time()
            runners[name].run(feeds)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)
            time.sleep(0.1)  # let spinning pools go quiet before the next engine
    return wall, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["compact", "span", "rrdb", "swinir"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--md", help="write the tables as Markdown")
    args = parser.parse_args(argv)
    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.export import exported

    lines = [
        f"{args.size}x{args.size}, batch 1, {args.runs} interleaved calls per engine after 1 warm-up, bare engine "
        f"sessions on the SDK's optimised graph; load average at the start {os.getloadavg()[0]:.2f} on "
        f'{os.cpu_count()} CPUs. `auto` = what `Predictor(model, backend="auto")` took after its trial (its '
        "ranking measured now). Ratios: the fastest engine over the row (1.00x = the fastest), on each clock.",
        "",
    ]
    for name in args.arch:
        arch = ARCHS[name]
        path = exported(name)
        chosen, ranking = auto_choice(path, arch.declared())
        runners = engines(path)
        feeds = {"input": np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)}
        wall, cpu = measure(runners, feeds, args.runs)
        wall_p50 = {n: float(np.median(v)) for n, v in wall.items()}
        cpu_min = {n: min(v) for n, v in cpu.items()}
        fastest = min(cpu_min, key=cpu_min.__getitem__)
        trial = ", ".join(f"{e['backend']} {e['ms']:,.0f} ms" for e in ranking.get("entries", []) if "ms" in e)
        verdict = "met" if cpu_min[chosen] <= cpu_min[fastest] * (1 + WITHIN) else "NOT met"
        lines += [
            f"### {arch.title}",
            "",
            f"auto took **{chosen}** (trial: {ranking.get('trial', '-')}; {trial}). Fastest here in CPU time: "
            f"{fastest}; auto's choice costs {cpu_min[chosen] / cpu_min[fastest]:.2f}x its CPU time: within "
            f"{WITHIN:.0%} {verdict}. Load at the end {os.getloadavg()[0]:.2f}.",
            "",
            "| engine | CPU min ms | CPU p50 ms | wall p50 ms | vs fastest (CPU) | vs fastest (wall) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        best_wall = min(wall_p50.values())
        for engine in runners:
            mark = " (auto)" if engine == chosen else ""
            lines.append(
                f"| {engine}{mark} | {cpu_min[engine] * 1e3:,.1f} | {np.median(cpu[engine]) * 1e3:,.1f} | "
                f"{wall_p50[engine] * 1e3:,.1f} | {cpu_min[fastest] / cpu_min[engine]:.2f}x | "
                f"{best_wall / wall_p50[engine]:.2f}x |"
            )
        lines.append("")
        print("\n".join(lines[-(len(runners) + 6) :]), flush=True)
        for runner in runners.values():
            runner.close()
    if args.md:
        from sdk.files import atomic_write

        text = "# Does `auto` pick the fastest engine? Measured\n\n" + "\n".join(lines) + "\n"
        atomic_write(args.md, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
