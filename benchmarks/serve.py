#!/usr/bin/env python
"""`sdk serve` under load on the loopback, against in-process ``predict_batch`` on the same images.

    python benchmarks/serve.py --rounds 2 --json benchmarks/results/serve.json \
        --md benchmarks/results/serve.md --plot benchmarks/results/serve.png

Cases: srcnn3 256x256 x3 and espcn 64x64 (x3). For each concurrency (1, 4, 16) a bounded number of
requests (and a time cap) goes to a real server subprocess from that many client threads, each with
its own keep-alive connection (the standard library's http.client: the load generator shares the two
cores with the server, so it should cost as little as it can). Throughput and p50/p99 latency are
measured client-side, around the whole HTTP request (upload, decode, batching, engine, encode,
download). The arms, on the same images in the same run:

- ``server``: ``POST /v1/models/{name}/upscale`` with PNG bytes in and out (``--max-batch 16``);
- ``server_batch1``: the same with ``--max-batch 1``, which shows what batching across requests buys;
- ``server_infer``: ``POST /v2/models/{name}/infer`` with the binary tensor extension, the model-space
  tensors in and out (no image codec, no pre/post-processing);
- ``in_process``: the issue's arm, ``Predictor.predict_batch`` on the decoded images in batches of
  the concurrency (at 1 a single ``Predictor(image)`` call, the engine's latency alone);
- ``in_process_single``: the same images one ``Predictor(image)`` call at a time. A user who batches
  256x256 tiles on two cores gets less, not more (the batch outgrows the caches, and predict_batch may
  tile it under its memory budget), so the goal ratio is taken against the better of the two
  in-process arms in each round ("best in-process"): what a user who measured would pick;
- ``in_process_codec``: what a user who replaces the server with their own code pays: PNG bytes
  decoded, the better in-process mode, the result encoded as the server encodes it;
- ``in_process_run``: ``Predictor.run`` on the same model-space tensors as ``server_infer``, stacked
  in batches of the concurrency;
- ``floor``: the floor of any Python server on this machine: a bare ASGI app on the same uvicorn
  (same HTTP parser and event loop) that reads the body and answers fixed bytes of a real answer's
  size, under the same load generator. Its time per request is what HTTP and the load generator
  cost with no work at all. "ceiling" adds that time and the image codec's to in-process: the
  throughput of a server whose own code cost nothing, the most the server arm could reach here.

Every in-process arm runs the Predictor the server runs (``sdk.serve.predictor.open_predictor``: ONNX
Runtime without its spin-wait after each run, which the server asks for), so that the engine is the
same in every arm and the differences are the server's alone.

Arms are interleaved round by round (their order reversed every other round), so the machine's drift
hits all of them alike; every figure is a median over rounds and ratios are taken within a round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

CASES = [
    {"name": "srcnn3 256x256 x3", "model": "srcnn3", "size": 256, "scale": 3, "requests": {1: 6, 4: 12, 16: 32}},
    {"name": "espcn 64x64 x3", "model": "espcn", "size": 64, "scale": 3, "requests": {1: 120, 4: 160, 16: 320}},
]
CONCURRENCY = (1, 4, 16)
SMOKE_REQUESTS = {1: 2, 4: 4, 16: 16}  # --smoke: every concurrency, as few requests as fill it
ARMS = (
    "server",
    "server_batch1",
    "server_infer",
    "in_process",
    "in_process_single",
    "in_process_codec",
    "in_process_run",
    "floor",
)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(latencies: list[float], wall: float, failed: int = 0) -> dict:
    return {
        "throughput": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "done": len(latencies),
        "failed": failed,
    }


def load(url: str, path: str, bodies: list[tuple[bytes, dict]], concurrency: int, time_cap: float) -> dict:
    """Send every (body, headers) once from ``concurrency`` threads; a bounded loop (count and time)."""
    address = urlsplit(url)
    latencies, failures, lock = [], [], threading.Lock()
    next_index = iter(range(len(bodies)))
    deadline = time.monotonic() + time_cap

    def worker():
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        try:
            while time.monotonic() < deadline:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                body, headers = bodies[index]
                started = time.perf_counter()
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies if response.status == 200 else failures).append(elapsed)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(latencies, time.perf_counter() - started, len(failures))


def in_batches(items: list, concurrency: int, run) -> dict:
    """``run(chunk)`` on consecutive chunks of ``concurrency`` items (the requests that arrived
    together); each item's latency runs from its chunk's start to the end of its result: the whole
    chunk for a batch, its own place in the line for one-by-one calls (``run`` then returns each
    result's end time)."""
    latencies = []
    started = time.perf_counter()
    for first in range(0, len(items), concurrency):
        chunk = items[first : first + concurrency]
        t0 = time.perf_counter()
        ends = run(chunk)
        done = time.perf_counter()
        latencies.extend([end - t0 for end in ends] if isinstance(ends, tuple) else [done - t0] * len(chunk))
    return summary(latencies, time.perf_counter() - started)


def hello_app(answer: bytes):
    """The floor arm's app: read the whole body, answer ``answer``; no framework, no work."""
    headers = [(b"content-type", b"image/png"), (b"content-length", str(len(answer)).encode())]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


class HelloServer:
    """``hello_app`` in a subprocess of its own on a free port, as ``sdk serve`` runs in its own."""

    def __init__(self, answer: bytes, log_dir: Path):
        from serving import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer_path = log_dir / f"hello-{self.port}.bin"
        self.answer_path.write_bytes(answer)

    def __enter__(self) -> HelloServer:
        import socket
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__, "--hello", str(self.port), str(self.answer_path)])
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError("the floor arm's server did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc_info) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def infer_body(feeds: dict, output: str) -> tuple[bytes, dict]:
    """A Triton HTTP client's request: a JSON header, then each input's raw bytes."""
    inputs, blobs = [], []
    for name, array in feeds.items():
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        inputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(data)},
            }
        )
        blobs.append(data)
    head = json.dumps({"inputs": inputs, "outputs": [{"name": output, "parameters": {"binary_data": True}}]}).encode()
    return head + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }


def run_case(case: dict, rounds: int, time_cap: float, log_dir: Path) -> dict:
    import numpy as np
    from serving import Server, encode, picture

    from sdk.serve import coding
    from sdk.serve.predictor import open_predictor

    scale, model = case["scale"], case["model"]
    count = max(case["requests"].values())
    images = [picture(case["size"], case["size"], seed=i) for i in range(count)]
    payloads = [(encode(image), {"content-type": "image/png"}) for image in images]
    rows = {c: {arm: [] for arm in ARMS} for c in CONCURRENCY}
    with (
        Server(model, "--max-batch", "16", log_dir=log_dir) as batched,
        Server(model, "--max-batch", "1", log_dir=log_dir) as unbatched,
        open_predictor(model, "ort-cpu") as predictor,
        HelloServer(coding.encode(predictor(images[0], scale=scale), "png", None)[0], log_dir) as hello,
    ):
        pipeline = predictor.pipeline
        feeds = [pipeline.feeds(pipeline.prepare(image[None], scale).tensor, scale) for image in images]
        bodies = [infer_body(f, pipeline.output_name) for f in feeds]
        upscale_path = f"/v1/models/{model}/upscale?scale={scale}"
        infer_path = f"/v2/models/{model}/infer"

        def batch(chunk):
            return (
                [predictor(chunk[0], scale=scale)]
                if len(chunk) == 1
                else predictor.predict_batch(chunk, scale=scale, batch_size=len(chunk))
            )

        def single(chunk):  # end times, for in_batches
            ends = []
            for image in chunk:
                predictor(image, scale=scale)
                ends.append(time.perf_counter())
            return tuple(ends)

        def stacked_run(chunk):  # the image input stacked; a runtime-scale factor is one for all
            return predictor.run(
                {
                    name: np.concatenate([f[name] for f in chunk]) if value.ndim == 4 else value
                    for name, value in chunk[0].items()
                }
            )

        best_mode = dict.fromkeys(CONCURRENCY, batch)  # set per round from the two in-process arms

        def codec(chunk, concurrency):
            decoded = [coding.decode(body, 1 << 30)[0] for body, _ in chunk]
            if best_mode[concurrency] is batch:
                outs = batch([d.pixels for d in decoded])
                return [coding.encode(out, "png", d) for out, d in zip(outs, decoded)]
            ends = []
            for d in decoded:
                coding.encode(predictor(d.pixels, scale=scale), "png", d)
                ends.append(time.perf_counter())
            return tuple(ends)

        for server in (batched, unbatched):  # warm-up: first engine runs allocate
            load(server.url, upscale_path, payloads[:4], 2, time_cap)
        load(batched.url, infer_path, bodies[:4], 2, time_cap)
        load(hello.url, upscale_path, payloads[:4], 2, time_cap)
        in_batches(images[:4], 2, batch)
        for round_index in range(rounds):
            for concurrency in CONCURRENCY:
                n = case["requests"][concurrency]
                c = concurrency
                results = {}

                def in_process_group():
                    results["in_process"] = in_batches(images[:n], c, batch)
                    results["in_process_single"] = in_batches(images[:n], c, single) if c > 1 else results["in_process"]
                    faster = results["in_process_single"]["throughput"] > results["in_process"]["throughput"]
                    best_mode[c] = single if faster else batch
                    results["in_process_codec"] = in_batches(payloads[:n], c, lambda chunk: codec(chunk, c))

                groups = [
                    in_process_group,
                    lambda: results.update(server=load(batched.url, upscale_path, payloads[:n], c, time_cap)),
                    lambda: results.update(server_batch1=load(unbatched.url, upscale_path, payloads[:n], c, time_cap)),
                    lambda: results.update(in_process_run=in_batches(feeds[:n], c, stacked_run)),
                    lambda: results.update(server_infer=load(batched.url, infer_path, bodies[:n], c, time_cap)),
                    lambda: results.update(floor=load(hello.url, upscale_path, payloads[:n], c, time_cap)),
                ]
                if round_index % 2:
                    groups.reverse()
                for group in groups:
                    group()
                for arm in ARMS:
                    result = results[arm]
                    rows[c][arm].append(result)
                    print(
                        f"  {case['name']:18} c={c:<2} round {round_index + 1} {arm:17} "
                        f"{result['throughput']:7.2f} img/s  p50 {result['p50_ms']:8.1f} ms  p99 {result['p99_ms']:8.1f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
    return {
        "case": case["name"],
        "model": model,
        "size": case["size"],
        "scale": scale,
        "requests": case["requests"],
        "by_concurrency": {c: summarize(arms) for c, arms in rows.items()},
    }


def summarize(arms: dict) -> dict:
    entry = {
        arm: {k: statistics.median(r[k] for r in results) for k in ("throughput", "p50_ms", "p99_ms")}
        for arm, results in arms.items()
    }

    def per_round(fn):
        return statistics.median(fn(*row) for row in zip(*(arms[a] for a in ARMS)))

    def best(r):  # the better in-process arm of a round
        return max(r[ARMS.index("in_process")], r[ARMS.index("in_process_single")], key=lambda x: x["throughput"])

    i = {a: ARMS.index(a) for a in ARMS}
    entry["ratio_vs_best"] = per_round(lambda *r: r[i["server"]]["throughput"] / best(r)["throughput"])
    entry["ratio_vs_issue_arm"] = per_round(lambda *r: r[i["server"]]["throughput"] / r[i["in_process"]]["throughput"])
    entry["ratio_vs_codec"] = per_round(
        lambda *r: r[i["server"]]["throughput"] / r[i["in_process_codec"]]["throughput"]
    )
    entry["infer_ratio"] = per_round(
        lambda *r: r[i["server_infer"]]["throughput"] / r[i["in_process_run"]]["throughput"]
    )
    entry["batching_gain"] = per_round(lambda *r: r[i["server"]]["throughput"] / r[i["server_batch1"]]["throughput"])
    entry["added_p50_ms"] = per_round(lambda *r: r[i["server"]]["p50_ms"] - best(r)["p50_ms"])
    entry["added_p50_ms_vs_codec"] = per_round(lambda *r: r[i["server"]]["p50_ms"] - r[i["in_process_codec"]]["p50_ms"])
    entry["infer_added_p50_ms"] = per_round(
        lambda *r: r[i["server_infer"]]["p50_ms"] - r[i["in_process_run"]]["p50_ms"]
    )
    entry["ceiling"] = per_round(lambda *r: ceiling(r[i["in_process_codec"]], r[i["floor"]]))
    entry["ceiling_ratio"] = per_round(
        lambda *r: ceiling(r[i["in_process_codec"]], r[i["floor"]]) / best(r)["throughput"]
    )
    entry["server_vs_ceiling"] = per_round(
        lambda *r: r[i["server"]]["throughput"] / ceiling(r[i["in_process_codec"]], r[i["floor"]])
    )
    entry["floor_ms"] = per_round(lambda *r: 1000 / r[i["floor"]]["throughput"])
    # The least HTTP could add to a lone request's p50: the floor's round trip and the codec.
    entry["least_added_p50_ms"] = per_round(
        lambda *r: r[i["floor"]]["p50_ms"] + r[i["in_process_codec"]]["p50_ms"] - best(r)["p50_ms"]
    )
    entry["server_own_ms"] = per_round(
        lambda *r: 1000 / r[i["server"]]["throughput"] - 1000 / ceiling(r[i["in_process_codec"]], r[i["floor"]])
    )
    entry["failed"] = sum(r["failed"] for results in arms.values() for r in results)
    return entry


def ceiling(codec: dict, floor: dict) -> float:
    """Images/s of a server whose own code cost nothing: per image, the in-process time with the
    codec plus the floor's time per request (both use the same two cores, so the times add)."""
    return 1 / (1 / codec["throughput"] + 1 / floor["throughput"])


def markdown(results: list[dict], command: str) -> str:
    lines = [
        "# sdk serve on the loopback vs in-process",
        "",
        f"`{command}`",
        "",
        "Medians over rounds; ratios and differences taken within each round (arms interleaved). Latency is "
        'client-side. "best in-process" is the faster, in each round, of predict_batch in batches of the '
        'concurrency (the issue\'s arm) and one Predictor call per image; "+codec" adds the PNG decode and '
        "encode a user's own service would pay. See the docstring of benchmarks/serve.py for every arm.",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['case']}",
            "",
            "Image endpoint (PNG in, PNG out):",
            "",
            "| clients | predict_batch img/s | single calls img/s | best in-process +codec img/s | server img/s | "
            "server / best in-process | server / predict_batch | server / +codec | --max-batch 1 img/s | "
            "batching gain | best in-process p50 ms | server p50 ms | server p99 ms | HTTP adds p50 ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c, e in r["by_concurrency"].items():
            best_p50 = min(e["in_process"]["p50_ms"], e["in_process_single"]["p50_ms"])
            lines.append(
                f"| {c} | {e['in_process']['throughput']:.2f} | {e['in_process_single']['throughput']:.2f} | "
                f"{e['in_process_codec']['throughput']:.2f} | {e['server']['throughput']:.2f} | "
                f"**{e['ratio_vs_best']:.2f}** | {e['ratio_vs_issue_arm']:.2f} | {e['ratio_vs_codec']:.2f} | "
                f"{e['server_batch1']['throughput']:.2f} | {e['batching_gain']:.2f} | {best_p50:.1f} | "
                f"{e['server']['p50_ms']:.1f} | {e['server']['p99_ms']:.1f} | **{e['added_p50_ms']:+.1f}** |"
            )
        lines += [
            "",
            "The floor (a bare ASGI app on the same uvicorn, same load generator, no work) and the ceiling "
            "(in-process + codec + the floor's time per request):",
            "",
            "| clients | floor req/s | floor ms / request | floor p50 ms | ceiling img/s | ceiling / best in-process | "
            "server / ceiling | server's own ms / image | least HTTP + codec could add p50 ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c, e in r["by_concurrency"].items():
            lines.append(
                f"| {c} | {e['floor']['throughput']:.0f} | {e['floor_ms']:.2f} | {e['floor']['p50_ms']:.2f} | "
                f"{e['ceiling']:.2f} | {e['ceiling_ratio']:.2f} | {e['server_vs_ceiling']:.2f} | {e['server_own_ms']:.2f} | "
                f"{e['least_added_p50_ms']:+.1f} |"
            )
        lines += [
            "",
            "Open Inference Protocol, binary tensors (model-space tensors in and out, no codec):",
            "",
            "| clients | Predictor.run img/s | /v2 infer img/s | infer / run | run p50 ms | infer p50 ms | "
            "infer p99 ms | HTTP adds p50 ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c, e in r["by_concurrency"].items():
            lines.append(
                f"| {c} | {e['in_process_run']['throughput']:.2f} | {e['server_infer']['throughput']:.2f} | "
                f"{e['infer_ratio']:.2f} | {e['in_process_run']['p50_ms']:.1f} | {e['server_infer']['p50_ms']:.1f} | "
                f"{e['server_infer']['p99_ms']:.1f} | {e['infer_added_p50_ms']:+.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for ax, r in zip(axes[0], results):
        cs = list(r["by_concurrency"])
        for arm, label, style in (
            ("in_process", "in-process predict_batch", "-"),
            ("in_process_single", "in-process single calls", "-"),
            ("in_process_codec", "in-process + PNG decode/encode", ":"),
            ("server", "sdk serve /v1 upscale (PNG)", "-"),
            ("server_batch1", "sdk serve --max-batch 1", "--"),
            ("server_infer", "sdk serve /v2 infer (binary tensors)", "-."),
            ("in_process_run", "in-process Predictor.run (same tensors)", "-."),
        ):
            ax.plot(cs, [r["by_concurrency"][c][arm]["throughput"] for c in cs], style, marker="o", label=label)
        ax.plot(
            cs,
            [r["by_concurrency"][c]["ceiling"] for c in cs],
            ":",
            color="grey",
            marker="x",
            label="ceiling: in-process + codec + bare-ASGI floor",
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("images / s")
        ax.set_title(r["case"])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run for the test suite (32x32 images, a few requests, one round)"
    )
    parser.add_argument(
        "--hello", nargs=2, metavar=("PORT", "ANSWER"), help=argparse.SUPPRESS
    )  # the floor arm's server
    args = parser.parse_args(argv)
    if args.hello:
        import uvicorn

        uvicorn.run(
            hello_app(Path(args.hello[1]).read_bytes()),
            host="127.0.0.1",
            port=int(args.hello[0]),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        return 0
    import os
    import tempfile

    cases = CASES
    if args.smoke:
        cases = [
            {**c, "name": f"{c['model']} 32x32 x{c['scale']}", "size": 32, "requests": SMOKE_REQUESTS} for c in CASES
        ]
        args.rounds, args.time_cap = 1, min(args.time_cap, 20.0)
    results, load_before, started = [], os.getloadavg(), time.monotonic()
    with tempfile.TemporaryDirectory() as logs:
        for case in cases:
            if case["model"] in args.cases:
                results.append(run_case(case, args.rounds, args.time_cap, Path(logs)))
    command = "python benchmarks/serve.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load_average = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    text = markdown(results, command) + (
        f"\nLoad average (1, 5, 15 min) before the run {load_average['before']}, "
        f"after {load_average['after']}; the run took {time.monotonic() - started:.0f} s.\n"
    )
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps({"command": command, "load_average": load_average, "results": results}, indent=2)
        )
    if args.md:
        args.md.write_text(text)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
