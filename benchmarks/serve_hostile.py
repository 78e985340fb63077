#!/usr/bin/env python
"""`sdk serve` at its defaults under hostile clients, against itself left alone, in one run.

    python benchmarks/serve_hostile.py --md benchmarks/results/serve_hostile.md \
        --json benchmarks/results/serve_hostile.json
    python benchmarks/serve_hostile.py --smoke          # seconds; tests/test_serve_bench_hostile.py runs it

Two goals of issue 23, each measured side by side in the same run on a server subprocess (srcnn3 on
ort-cpu, every limit at its default; a fresh one for memory, so that its idle size is its own):

- **Slow clients.** A normal client sends small images (64x64 x2, PNG) one after another; its median
  latency alone, then while 64 uploads that declare 10 MiB trickle 1 KiB/s and 1,000 connections
  hold half a request line (each one reopened as soon as the server cuts it, so the load stays at
  that size; the client runs 25 s under attack, so it also meets the moment the server cuts them all
  at --header-timeout and they come back), then alone again. The attack runs from a thread of this
  process, so the client shares its interpreter with it: the ratio is an upper bound. Goal: every answer 200, the median under attack within 2x the median
  alone (the mean of the two alone rounds, each as long as the attacked one). Floor: the same image
  through the server's ``Predictor`` in this process (engine and pre/post-processing, no HTTP, no
  codec), timed between requests so that both see the same moment of the machine.
- **Memory.** The server's RSS idle (after one small request), at its peak during one large request
  (1600x1600 x2 by default), and 10 s after it. Goal: the last within 1.5x idle. Floor: idle itself.
- **CPU time bounded by --timeout.** The same large request on a server at ``--timeout 1``: when it
  is answered (504), and the server's CPU seconds from sending it until the CPU time levels off (the
  work called off), beside the CPU seconds the whole request cost the memory round's server. Goal:
  the timed-out request costs at most (timeout + 1 s) x the cores. Then a small request must get 200.

The load average (``uptime``) before and after is printed and written with the figures: the machine
is shared, and a busy machine moves every latency.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

HALF_LINE = b"POST /v1/models/srcnn3/upscale?scale=2 HTTP/1.1\r\nHost: attacker\r\n"
SLOW_HEAD = b"POST /v1/models/srcnn3/upscale?scale=2 HTTP/1.1\r\nHost: attacker\r\nContent-Length: 10485760\r\n\r\n"


def load_average() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


class Attack:
    """``slow`` trickling uploads and ``half_open`` connections with half a request line, each
    reopened when the server closes it, from one thread (select over every socket)."""

    def __init__(self, port: int, slow: int, half_open: int, rate: int = 1024):
        self.port, self.slow, self.half_open, self.rate = port, slow, half_open, rate
        self.stop = threading.Event()
        self.cut = {"slow": 0, "half_open": 0}  # closed by the server (and reopened)
        self.refused = 0  # connections the server would not take
        self.open_now = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attack:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)

    def _open(self, kind: str) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(SLOW_HEAD if kind == "slow" else HALF_LINE)
            sock.setblocking(False)
            return sock
        except OSError:
            self.refused += 1
            return None

    def _run(self) -> None:
        import selectors

        chosen = selectors.DefaultSelector()  # epoll: select() stops at descriptor 1024
        for kind, count in (("slow", self.slow), ("half_open", self.half_open)):
            for _ in range(count):
                sock = self._open(kind)
                if sock is not None:
                    chosen.register(sock, selectors.EVENT_READ, kind)
        self.open_now = len(chosen.get_map())
        next_trickle = time.monotonic()
        while not self.stop.is_set():
            for key, _ in chosen.select(0.1):  # the server answered (408, 503) or closed: reopen
                sock, kind = key.fileobj, key.data
                chosen.unregister(sock)
                try:
                    sock.recv(65536)
                except OSError:
                    pass
                sock.close()
                self.cut[kind] += 1
                again = self._open(kind)
                if again is not None:
                    chosen.register(again, selectors.EVENT_READ, kind)
            self.open_now = len(chosen.get_map())
            if time.monotonic() >= next_trickle:
                next_trickle += 1.0
                for key in list(chosen.get_map().values()):
                    if key.data == "slow":
                        try:
                            key.fileobj.send(b"x" * self.rate)
                        except OSError:
                            pass
        for key in list(chosen.get_map().values()):
            key.fileobj.close()
        chosen.close()

    def check(self) -> int:
        """The attacking sockets open now; an error if the attack thread died."""
        if not self.thread.is_alive():
            raise RuntimeError("the attack thread stopped; see its traceback above")
        return self.open_now


def normal_client(
    url: str, body: bytes, count: int, floor=None, seconds: float = 0.0
) -> tuple[list[float], list[int], list[float]]:
    """``count`` requests one after another (and more until ``seconds`` have passed): (seconds each,
    statuses, and with ``floor`` - a callable timed between requests, so that both see the same moment
    of a noisy machine - its seconds)."""
    import httpx

    times: list[float] = []
    statuses: list[int] = []
    floors: list[float] = []
    until = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60) as client:
        while len(times) < count or time.monotonic() < until:
            started = time.perf_counter()
            response = client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=body)
            times.append(time.perf_counter() - started)
            statuses.append(response.status_code)
            if floor is not None:
                started = time.perf_counter()
                floor()
                floors.append(time.perf_counter() - started)
    return times, statuses, floors


def slow_clients(server, args, small: bytes, floor) -> dict:
    normal_client(server.url, small, 3, floor)  # warm: the factor's session and the connection
    # The floor, timed between requests so that both see the same moment of the machine; then each
    # round the same way: requests only, one after another, for as long as the attacked round.
    _, s0, floors = normal_client(server.url, small, args.requests, floor)
    alone_before, s1, _ = normal_client(server.url, small, args.requests, seconds=args.attack_seconds)
    with Attack(server.port, args.slow, args.half_open) as attack:
        deadline = time.monotonic() + args.settle
        while attack.check() < args.slow + args.half_open and time.monotonic() < deadline:
            time.sleep(0.1)  # every attacking socket open before the client starts
        open_before = attack.check()
        # Long enough for the server to cut the attack's sockets (--header-timeout 10 s) and the attacker
        # to open them again: the client sees that moment too.
        attacked, s2, _ = normal_client(server.url, small, args.requests, seconds=args.attack_seconds)
        open_after = attack.check()
        cut, refused = dict(attack.cut), attack.refused
    alone_after, s3, _ = normal_client(server.url, small, args.requests, seconds=args.attack_seconds)
    alone = (statistics.median(alone_before) + statistics.median(alone_after)) / 2
    under = statistics.median(attacked)
    return {
        "floor_ms": round(statistics.median(floors) * 1000, 2),
        "slow_uploads": args.slow,
        "half_open": args.half_open,
        "requests": args.requests,
        "attacked_requests": len(attacked),
        "attack_seconds": args.attack_seconds,
        "alone_ms": round(alone * 1000, 2),
        "attacked_ms": round(under * 1000, 2),
        "attacked_p_max_ms": round(max(attacked) * 1000, 2),
        "ratio": round(under / alone, 2),
        "alone_requests": [len(alone_before), len(alone_after)],
        "statuses_alone": sorted(set(s0 + s1 + s3)),
        "statuses_attacked": sorted(set(s2)),
        "attack_sockets_open": [open_before, open_after],
        "cut_and_reopened": cut,
        "attacker_connections_refused": refused,
        "goal_met": set(s0 + s1 + s2 + s3) == {200} and under <= 2 * alone,
    }


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def memory(server, args, small: bytes, large: bytes) -> dict:
    import httpx

    pid = server.proc.pid
    normal_client(server.url, small, 3)
    time.sleep(1)
    idle = rss_bytes(pid)
    peak = [idle]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    with httpx.Client(base_url=server.url, timeout=300) as client:
        status = client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=large).status_code
    seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    done.set()
    sampler.join()
    time.sleep(args.after)
    after = rss_bytes(pid)
    return {
        "large": f"{args.large}x{args.large} x2",
        "status": status,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "idle_mib": round(idle / 2**20, 1),
        "peak_mib": round(peak[0] / 2**20, 1),
        "after_mib": round(after / 2**20, 1),
        "after_s": args.after,
        "ratio": round(after / idle, 2),
        "goal_met": status == 200 and after <= 1.5 * idle,
    }


def timeout_bound(server, args, small: bytes, large: bytes, whole_cpu_s: float) -> dict:
    """The large request at --timeout: when it is answered, and what it cost the server's CPU until
    the CPU time levelled off (grew under 0.05 s in half a second)."""
    import httpx

    pid = server.proc.pid
    normal_client(server.url, small, 3)
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    with httpx.Client(base_url=server.url, timeout=300) as client:
        status = client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=large).status_code
        answered = time.perf_counter() - started
        last = cpu_seconds(pid)
        while time.perf_counter() - started < answered + 60:
            time.sleep(0.5)
            now = cpu_seconds(pid)
            if now - last < 0.05:
                break
            last = now
        settled = time.perf_counter() - started - 0.5
        spent = last - cpu
        after = client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=small).status_code
    cores = os.cpu_count() or 1
    return {
        "timeout_s": args.timeout,
        "status": status,
        "answered_s": round(answered, 2),
        "settled_s": round(settled, 2),
        "cpu_s": round(spent, 2),
        "whole_cpu_s": whole_cpu_s,
        "ratio": round(spent / whole_cpu_s, 3) if whole_cpu_s else None,
        "bound_cpu_s": round((args.timeout + 1) * cores, 2),
        "next_status": after,
        "goal_met": status == 504 and after == 200 and spent <= (args.timeout + 1) * cores,
    }


def report(result: dict) -> str:
    slow, mem, late = result["slow_clients"], result["memory"], result["timeout"]
    lines = [
        "# sdk serve under hostile clients (benchmarks/serve_hostile.py)",
        "",
        f"Command: `{result['command']}`  ",
        f"Load average (1, 5, 15 min) before: {result['load_before']}; after: {result['load_after']}  ",
        f"Server: srcnn3 on ort-cpu, every limit at its default; {result['cpus']} CPUs.",
        "",
        "## Slow clients",
        "",
        "| normal client, 64x64 x2 | median ms | vs alone | floor (in-process Predictor) |",
        "|---|---|---|---|",
        f"| alone (before and after, {slow['alone_requests']} requests over {slow['attack_seconds']:g} s each) "
        f"| {slow['alone_ms']} | 1.00x | {slow['floor_ms']} ms |",
        f"| with {slow['slow_uploads']} slow uploads + {slow['half_open']} half-open connections "
        f"({slow['attacked_requests']} requests over {slow['attack_seconds']:g} s) "
        f"| {slow['attacked_ms']} | {slow['ratio']}x | {slow['floor_ms']} ms |",
        "",
        f"Statuses alone {slow['statuses_alone']}, under attack {slow['statuses_attacked']}; the server cut "
        f"(and the attacker reopened) {slow['cut_and_reopened']}; attacker connections refused: "
        f"{slow['attacker_connections_refused']}; attacking sockets open when the client started and ended: "
        f"{slow['attack_sockets_open']}. Goal (all 200, within 2x): **{'met' if slow['goal_met'] else 'NOT met'}**.",
        "",
        "## Memory",
        "",
        "| RSS | MiB | vs idle |",
        "|---|---|---|",
        f"| idle (floor) | {mem['idle_mib']} | 1.00x |",
        f"| peak during {mem['large']} ({mem['seconds']} s, status {mem['status']}) | {mem['peak_mib']} "
        f"| {round(mem['peak_mib'] / mem['idle_mib'], 2)}x |",
        f"| {mem['after_s']} s after | {mem['after_mib']} | {mem['ratio']}x |",
        "",
        f"Goal (within 1.5x idle {mem['after_s']} s after): **{'met' if mem['goal_met'] else 'NOT met'}**.",
        "",
        "## CPU time bounded by --timeout",
        "",
        "| the large request | status | answered after s | server CPU s | vs the whole request |",
        "|---|---|---|---|---|",
        f"| whole (the memory round, no timeout) | {mem['status']} | {mem['seconds']} | {mem['cpu_s']} | 1.00x |",
        f"| at --timeout {late['timeout_s']:g} | {late['status']} | {late['answered_s']} | {late['cpu_s']} "
        f"| {late['ratio']}x |",
        "",
        f"The server's CPU time levelled off {late['settled_s']} s after the request was sent; the next request got "
        f"{late['next_status']}. Bound: (timeout + 1 s) x {result['cpus']} cores = {late['bound_cpu_s']} CPU s. "
        f"Goal (504, CPU within the bound, the next request served): **{'met' if late['goal_met'] else 'NOT met'}**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds: small attack, small large image")
    parser.add_argument("--slow", type=int, default=64, help="slow uploads (default 64)")
    parser.add_argument("--half-open", type=int, default=1000, help="half-open connections (default 1000)")
    parser.add_argument("--requests", type=int, default=20, help="normal requests per round (default 20)")
    parser.add_argument("--settle", type=float, default=60.0, help="most seconds for the attack to open its sockets")
    parser.add_argument(
        "--attack-seconds", type=float, default=25.0, help="the normal client's time under attack (default 25)"
    )
    parser.add_argument("--large", type=int, default=1600, help="side of the large request's image (default 1600)")
    parser.add_argument("--after", type=float, default=10.0, help="seconds after it to read RSS (default 10)")
    parser.add_argument("--timeout", type=float, default=1.0, help="--timeout of the CPU round's server (default 1)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--md", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.slow, args.half_open, args.requests, args.settle, args.large, args.after = 4, 20, 3, 10.0, 256, 1.0
        args.attack_seconds, args.timeout = 0.0, 0.05

    from serving import Server, encode, picture

    from sdk.serve.predictor import open_predictor

    image = picture(64, 64)
    small = encode(image)
    result = {
        "command": "python benchmarks/serve_hostile.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_before": load_average(),
        "cpus": os.cpu_count(),
    }
    # The floor: the Predictor the server runs, in this process, on the same image (no HTTP, no codec).
    with open_predictor("srcnn3", "ort-cpu") as predictor, Server("srcnn3") as server:
        result["slow_clients"] = slow_clients(server, args, small, lambda: predictor(image, scale=2))
    large = encode(picture(args.large, args.large, seed=1))
    with Server("srcnn3") as server:  # a fresh server: its idle size is not the attack's
        result["memory"] = memory(server, args, small, large)
    with Server("srcnn3", "--timeout", f"{args.timeout:g}") as server:
        result["timeout"] = timeout_bound(server, args, small, large, result["memory"]["cpu_s"])
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
