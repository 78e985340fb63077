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

``--torch`` adds the PyTorch module itself (benchmarks/devkit, the same weights) to the rotation, eager
and ``channels_last`` with as many threads as the engines get (``--compile`` also ``channels_last`` +
``torch.compile``, which takes minutes to compile), and ``--floor`` numpy's float32 matrix product on
as many FLOPs as one call of the model (the fp32 floor, timed in the same rotation): the issue's goals
"ahead of every PyTorch row" and "0.9 of the fp32 floor", side by side in CPU time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


class Call:
    """Something timed in the rotation that is not an engine session: ``run(feeds)`` ignores the feeds'
    dict form as needed."""

    def __init__(self, run, close=lambda: None):
        self.run, self.close = run, close


def torch_calls(name: str, feeds: dict, compiled: bool) -> dict:
    """The PyTorch module as users run it: eager, channels_last (and compiled), intra-op threads = cores."""
    import torch

    from benchmarks.devkit.archs import ARCHS
    from sdk.devices import cpu_cores

    torch.set_num_threads(cpu_cores())
    module = ARCHS[name].builder().eval()
    x = torch.from_numpy(feeds["input"])
    last = module.to(memory_format=torch.channels_last)
    x_last = x.to(memory_format=torch.channels_last)

    def call(m, t):
        def run(_):
            with torch.inference_mode():
                return m(t)

        return Call(run)

    calls = {"torch eager": call(ARCHS[name].builder().eval(), x), "torch channels_last": call(last, x_last)}
    if compiled:
        calls["torch channels_last+compile"] = call(torch.compile(last), x_last)
    return calls


def floor_call(path: Path, size: int, scale: int, declared: dict) -> tuple[Call, float, float]:
    """numpy's float32 matmul on about as many FLOPs as one call of the model (sdk.bench's count), at
    the fastest of sdk.bench.floor's sizes: (the call, the model's FLOPs, the model's FLOPs over the
    call's, to scale its time by)."""
    from sdk.bench.floor import fastest_side
    from sdk.bench.flops import model_flops
    from sdk.model import Model

    flops = model_flops(Model(str(path)), size, 1, scale, declared)
    side = fastest_side(flops)[0] if flops > 0 else 64
    a = np.ones((side, side), dtype=np.float32)
    out = np.empty_like(a)
    repeats = max(1, round(flops / (2.0 * side**3)))

    def run(_):
        for _ in range(repeats):
            np.matmul(a, a, out=out)

    return Call(run), flops, flops / (repeats * 2.0 * side**3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["compact", "span", "rrdb", "swinir"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--torch", action="store_true", help="add PyTorch eager and channels_last to the rotation")
    parser.add_argument("--compile", action="store_true", help="and channels_last + torch.compile (minutes)")
    parser.add_argument("--floor", action="store_true", help="add the fp32 floor (numpy sgemm on the model's FLOPs)")
    parser.add_argument("--md", help="write the tables as Markdown")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run for the test suite (Compact at 16x16, one call each)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.size, args.runs = ["compact"], 16, 1
    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.export import exported
    from benchmarks.devkit.turns import take_turns

    lines = [
        f"{args.size}x{args.size}, batch 1, {args.runs} interleaved calls per engine after 1 warm-up, bare engine "
        f"sessions on the SDK's optimised graph; load average at the start {os.getloadavg()[0]:.2f} on "
        f'{os.cpu_count()} CPUs. `auto` = what `Predictor(model, backend="auto")` took after its trial (its '
        "ranking measured now). Ratios: the fastest engine over the row (1.00x = the fastest), on each clock; "
        "the fastest PyTorch row over the row (above 1: ahead of it); the fp32 floor's time over the row's. "
        "The floor row: numpy's float32 matmul, its time scaled to the model's FLOPs.",
        "",
    ]
    for name in args.arch:
        arch = ARCHS[name]
        path = exported(name)
        chosen, ranking = auto_choice(path, arch.declared())
        runners = engines(path)
        feeds = {"input": np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)}
        others = torch_calls(name, feeds, args.compile) if args.torch or args.compile else {}
        factor, flops = {}, 0.0
        if args.floor:
            others["fp32 floor (sgemm)"], flops, factor["fp32 floor (sgemm)"] = floor_call(
                path, args.size, arch.scale, arch.declared()
            )
        rows = {**runners, **others}
        wall, cpu = take_turns({n: (lambda r=r: r.run(feeds)) for n, r in rows.items()}, args.runs, warmup=1)
        wall_p50 = {n: float(np.median(v)) * factor.get(n, 1.0) for n, v in wall.items()}
        cpu_min = {n: min(v) * factor.get(n, 1.0) for n, v in cpu.items()}
        fastest = min(runners, key=cpu_min.__getitem__)
        torches = [n for n in others if n.startswith("torch")]
        best_torch = min(torches, key=cpu_min.__getitem__) if torches else None
        floor = cpu_min.get("fp32 floor (sgemm)")
        trial = ", ".join(f"{e['backend']} {e['ms']:,.0f} ms" for e in ranking.get("entries", []) if "ms" in e)
        verdict = "met" if cpu_min[chosen] <= cpu_min[fastest] * (1 + WITHIN) else "NOT met"
        lines += [
            f"### {arch.title}",
            "",
            f"auto took **{chosen}** (trial: {ranking.get('trial', '-')}; {trial}). Fastest engine here in CPU "
            f"time: {fastest}; auto's choice costs {cpu_min[chosen] / cpu_min[fastest]:.2f}x its CPU time: within "
            f"{WITHIN:.0%} {verdict}."
            + (
                f" Against the fastest PyTorch row ({best_torch}): {cpu_min[best_torch] / cpu_min[chosen]:.2f}x."
                if best_torch
                else ""
            )
            + (f" Of the fp32 floor ({flops / 1e9:.1f} GFLOP): {floor / cpu_min[chosen]:.2f}." if floor else "")
            + f" Load at the end {os.getloadavg()[0]:.2f}.",
            "",
            "| row | CPU min ms | CPU p50 ms | wall p50 ms | vs fastest engine (CPU) | vs fastest engine (wall) "
            "| vs best torch (CPU) | of floor (CPU) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        best_wall = min(wall_p50[n] for n in runners)
        for row in cpu_min:
            mark = " (auto)" if row == chosen else ""
            versus = f"{cpu_min[best_torch] / cpu_min[row]:.2f}x" if best_torch else "-"
            of_floor = f"{floor / cpu_min[row]:.2f}" if floor else "-"
            lines.append(
                f"| {row}{mark} | {cpu_min[row] * 1e3:,.1f} | {np.median(cpu[row]) * factor.get(row, 1.0) * 1e3:,.1f} | "
                f"{wall_p50[row] * 1e3:,.1f} | {cpu_min[fastest] / cpu_min[row]:.2f}x | "
                f"{best_wall / wall_p50[row]:.2f}x | {versus} | {of_floor} |"
            )
        lines.append("")
        print("\n".join(lines[-(len(cpu_min) + 6) :]), flush=True)
        for runner in [*runners.values(), *others.values()]:
            runner.close()
    if args.md:
        from sdk.files import atomic_write

        text = "# Does `auto` pick the fastest engine? Measured\n\n" + "\n".join(lines) + "\n"
        atomic_write(args.md, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
