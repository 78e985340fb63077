#!/usr/bin/env python
"""`sdk serve` under load on the loopback, against in-process ``predict_batch`` on the same images.

    python benchmarks/serve.py --rounds 2 --json benchmarks/results/serve.json \
        --md benchmarks/results/serve.md --plot benchmarks/results/serve.png

Cases: srcnn3 256x256 x3 and espcn 64x64 (x3). For each concurrency (1, 4, 16) a bounded number of
requests (and a time cap) goes to a real server subprocess from that many client threads, each with
its own keep-alive connection; throughput and p50/p99 latency are measured client-side, around the
whole HTTP request (upload, decode, batching, engine, encode, download). The in-process arm runs
``Predictor.predict_batch`` on the decoded images, in batches of the same concurrency (at 1 it is a
single ``Predictor(image)`` call, so its latency is the engine's alone). A second server with
``--max-batch 1`` shows what batching across requests buys. Arms are interleaved round by round, so
the machine's drift hits all of them alike; every figure is a median over rounds and ratios are taken
within a round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

CASES = [
    {"name": "srcnn3 256x256 x3", "model": "srcnn3", "size": 256, "scale": 3, "requests": {1: 6, 4: 16, 16: 32}},
    {"name": "espcn 64x64 x3", "model": "espcn", "size": 64, "scale": 3, "requests": {1: 150, 4: 200, 16: 320}},
]
CONCURRENCY = (1, 4, 16)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load(url: str, model: str, payloads: list[bytes], scale: int, concurrency: int, time_cap: float) -> dict:
    """Send every payload once from ``concurrency`` threads; a bounded loop (count and time)."""
    import httpx

    latencies, failures, lock = [], [], threading.Lock()
    next_index = iter(range(len(payloads)))
    deadline = time.monotonic() + time_cap

    def worker():
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.monotonic() < deadline:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                started = time.perf_counter()
                response = client.post(f"/v1/models/{model}/upscale", params={"scale": scale}, content=payloads[index])
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies if response.status_code == 200 else failures).append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"throughput": len(latencies) / wall, "p50_ms": 1000 * percentile(latencies, 0.5),
            "p99_ms": 1000 * percentile(latencies, 0.99), "done": len(latencies), "failed": len(failures)}


def in_process(predictor, images: list, scale: int, concurrency: int) -> dict:
    latencies = []
    started = time.perf_counter()
    for first in range(0, len(images), concurrency):
        chunk = images[first:first + concurrency]
        t0 = time.perf_counter()
        if concurrency == 1:
            predictor(chunk[0], scale=scale)
        else:
            predictor.predict_batch(chunk, scale=scale, batch_size=concurrency)
        latencies.extend([time.perf_counter() - t0] * len(chunk))  # each waits for its whole batch
    wall = time.perf_counter() - started
    return {"throughput": len(images) / wall, "p50_ms": 1000 * percentile(latencies, 0.5),
            "p99_ms": 1000 * percentile(latencies, 0.99), "done": len(images), "failed": 0}


def run_case(case: dict, rounds: int, time_cap: float, log_dir: Path) -> dict:
    from serving import Server, encode, picture

    from sdk import Predictor

    images = [picture(case["size"], case["size"], seed=i) for i in range(max(case["requests"].values()))]
    payloads = [encode(image) for image in images]
    rows = {c: {"server": [], "server_batch1": [], "in_process": []} for c in CONCURRENCY}
    with Server(case["model"], "--max-batch", "16", log_dir=log_dir) as batched, \
            Server(case["model"], "--max-batch", "1", log_dir=log_dir) as unbatched, \
            Predictor(case["model"], backend="ort-cpu") as predictor:
        for server in (batched, unbatched):  # warm-up: first engine runs allocate
            load(server.url, case["model"], payloads[:4], case["scale"], 2, time_cap)
        in_process(predictor, images[:4], case["scale"], 2)
        for round_index in range(rounds):
            for concurrency in CONCURRENCY:
                n = case["requests"][concurrency]
                arms = [("in_process", lambda: in_process(predictor, images[:n], case["scale"], concurrency)),
                        ("server", lambda: load(batched.url, case["model"], payloads[:n], case["scale"], concurrency, time_cap)),
                        ("server_batch1", lambda: load(unbatched.url, case["model"], payloads[:n], case["scale"], concurrency, time_cap))]
                if round_index % 2:
                    arms.reverse()
                for arm, run in arms:
                    result = run()
                    rows[concurrency][arm].append(result)
                    print(f"  {case['name']:18} c={concurrency:<2} round {round_index + 1} {arm:13} "
                          f"{result['throughput']:7.2f} img/s  p50 {result['p50_ms']:8.1f} ms  p99 {result['p99_ms']:8.1f} ms",
                          file=sys.stderr, flush=True)
    summary = {}
    for concurrency, arms in rows.items():
        entry = {arm: {k: statistics.median(r[k] for r in results) for k in ("throughput", "p50_ms", "p99_ms")}
                 for arm, results in arms.items()}
        entry["throughput_ratio"] = statistics.median(
            s["throughput"] / p["throughput"] for s, p in zip(arms["server"], arms["in_process"]))
        entry["batching_gain"] = statistics.median(
            s["throughput"] / b["throughput"] for s, b in zip(arms["server"], arms["server_batch1"]))
        entry["added_p50_ms"] = statistics.median(
            s["p50_ms"] - p["p50_ms"] for s, p in zip(arms["server"], arms["in_process"]))
        entry["failed"] = sum(r["failed"] for results in arms.values() for r in results)
        summary[concurrency] = entry
    return {"case": case["name"], "model": case["model"], "size": case["size"], "scale": case["scale"],
            "requests": case["requests"], "by_concurrency": summary}


def markdown(results: list[dict], command: str) -> str:
    lines = ["# sdk serve on the loopback vs in-process predict_batch", "", f"`{command}`", "",
             "Medians over rounds; ratios taken within each round (arms interleaved). Latency is client-side.", ""]
    for r in results:
        lines += [f"## {r['case']}", "",
                  "| concurrency | in-process img/s | server img/s | server/in-process | --max-batch 1 img/s | batching gain | "
                  "in-process p50 ms | server p50 ms | server p99 ms | HTTP adds p50 ms |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c, e in r["by_concurrency"].items():
            lines.append(f"| {c} | {e['in_process']['throughput']:.2f} | {e['server']['throughput']:.2f} | "
                         f"{e['throughput_ratio']:.2f} | {e['server_batch1']['throughput']:.2f} | {e['batching_gain']:.2f} | "
                         f"{e['in_process']['p50_ms']:.1f} | {e['server']['p50_ms']:.1f} | {e['server']['p99_ms']:.1f} | "
                         f"{e['added_p50_ms']:+.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2))
    for ax, r in zip(axes, results):
        cs = list(r["by_concurrency"])
        for arm, label in (("in_process", "in-process predict_batch"), ("server", "sdk serve"),
                           ("server_batch1", "sdk serve --max-batch 1")):
            ax.plot(cs, [r["by_concurrency"][c][arm]["throughput"] for c in cs], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("images / s")
        ax.set_title(r["case"])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("sdk serve (loopback HTTP) vs in-process, same images, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds at most per load pass")
    parser.add_argument("--cases", nargs="*", default=[c["model"] for c in CASES])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    import tempfile

    import os

    results, load_before = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as logs:
        for case in CASES:
            if case["model"] in args.cases:
                results.append(run_case(case, args.rounds, args.time_cap, Path(logs)))
    command = "python benchmarks/serve.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    text = markdown(results, command) + f"\nLoad average (1, 5, 15 min) before the run {load['before']}, after {load['after']}.\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"command": command, "load_average": load, "results": results}, indent=2))
    if args.md:
        args.md.write_text(text)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
