"""Driving the worker processes: load, warm up, time, finish - interleaved or one row at a time.

Interleaved, every row stays loaded and the rows take turns call by call: the shared machine's
noise (other jobs, turbo, thermal) then lands on all rows alike, and ratios between rows hold even
when absolute times drift. Sequential needs only one row's memory at a time.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .runners import Job
from .worker import serve


@dataclass
class Measurement:
    """Everything timed for one row; ``reason`` is set when it could not run or failed."""

    job: Job
    available: bool = True
    reason: str = ""
    device: str = ""
    source: str = ""
    load_s: float | None = None
    first_ms: float | None = None
    compile_s: float | None = None
    sgemm_flops: float | None = None
    has_stages: bool = True
    times: list[float] = field(default_factory=list)
    stages: list[tuple] = field(default_factory=list)
    peak_rss_mb: float | None = None
    crashed: bool = False  # it could run but broke (error, death, hang): unlike "unavailable", a bug

    def fail(self, reason: str, crashed: bool = False) -> None:
        self.available, self.reason, self.crashed = False, reason, crashed


class WorkerLost(Exception):
    """The worker crashed, hung or reported an error; the message says which."""


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        hint = (
            " (the kernel's OOM killer? try --schedule sequential or a smaller size)" if -code == signal.SIGKILL else ""
        )
        return f"killed by {name}{hint}"
    return f"exit code {code}"


class Worker:
    def __init__(self, context, measurement: Measurement, timeout: float, target: Callable = serve):
        self.measurement = measurement
        self.timeout = timeout
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=target,
            args=(child, measurement.job),
            daemon=True,
            name=f"bench-{measurement.job.kind}-{measurement.job.backend}",
        )
        self.process.start()
        child.close()  # so a crash shows here as EOF instead of a hang

    def receive(self, what: str):
        if not self.conn.poll(self.timeout):
            self.stop()
            raise WorkerLost(f"hung: no answer to {what} within {self.timeout:g} s")
        try:
            reply = self.conn.recv()
        except (EOFError, ConnectionError):
            self.process.join(5)
            raise WorkerLost(f"the worker process died during {what}: {_exit_reason(self.process.exitcode)}") from None
        if reply[0] == "error":
            self.stop()
            raise WorkerLost(f"failed during {what}: {reply[1]}")
        return reply

    def ask(self, message: tuple):
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionError, OSError):
            self.process.join(5)
            raise WorkerLost(
                f"the worker process died before {message[0]}: {_exit_reason(self.process.exitcode)}"
            ) from None
        return self.receive(message[0])

    def settle(self, quiet_s: float = 0.002, poll_s: float = 0.01, limit_s: float = 2.0) -> None:
        """Wait until this worker's threads stop using the CPU.

        Engines keep their thread pools spinning for a while after a call (ORT's intra-op pool,
        OpenMP in torch) to answer the next one faster. Interleaved, that spinning would steal
        the cores from the next row's call: measured +70% on a 2-core machine. So each turn ends
        when the worker has gone quiet.
        """
        import psutil

        try:
            process = psutil.Process(self.process.pid)
            deadline = time.monotonic() + limit_s
            before = sum(process.cpu_times()[:2])
            while time.monotonic() < deadline:
                time.sleep(poll_s)
                now = sum(process.cpu_times()[:2])
                if now - before < quiet_s:
                    return
                before = now
        except psutil.Error:  # it exited: quiet enough
            return

    def stop(self) -> None:
        if self.conn.closed:
            return
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


@dataclass(frozen=True)
class Plan:
    warmup: int
    runs: int
    stage_runs: int
    timeout: float
    interleaved: bool = True

    def steps_per_row(self) -> int:
        return 2 + self.warmup + self.runs + self.stage_runs  # load+first, warm-up, runs, stages, finish


def measure(
    measurements: list[Measurement],
    plan: Plan,
    tick: Callable[[str, int], None] = lambda label, n: None,
    targets: dict[int, Callable] | None = None,
) -> None:
    """Fill in every available measurement; rows that fail get their reason instead.

    ``targets`` maps id(measurement) to another worker entry point (tests use it to crash one).
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited engine state
    pending = [m for m in measurements if m.available]
    for m in measurements:
        if not m.available:
            tick(_label(m), plan.steps_per_row())
    groups = [pending] if plan.interleaved else [[m] for m in pending]
    for group in groups:
        _run_group(context, group, plan, tick, targets or {})


def _label(m: Measurement) -> str:
    return {
        "sdk": m.job.backend,
        "raw": f"raw {m.job.backend}",
        "reference": m.job.backend,
        "channels_last": f"{m.job.backend} channels_last",
        "peer": f"{m.job.backend} compiled",
        "autocast": f"{m.job.backend} fp16 autocast",
        "floor": "fp32 floor",
    }[m.job.kind]


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of n rows in which every row follows every other row equally often (Williams design).

    A call runs differently depending on what ran just before it (measured: the row after torch was
    5-10% faster than the others, every time, cyclic order or rotated); cycling through these
    orders cancels that carry-over instead of handing it to one row.
    """
    if n <= 1:
        return [list(range(n))]
    base, low, high = [0], 1, n - 1
    while len(base) < n:
        base.append(low)
        low += 1
        if len(base) < n:
            base.append(high)
            high -= 1
    orders = [[(x + shift) % n for x in base] for shift in range(n)]
    if n % 2:  # odd n needs the mirror images too
        orders += [order[::-1] for order in orders]
    return orders


def _ordered(workers: list[Worker], round_: int) -> list[Worker]:
    orders = balanced_orders(len(workers))
    return [workers[i] for i in orders[round_ % len(orders)]]


def _run_group(context, group: list[Measurement], plan: Plan, tick, targets: dict[int, Callable]) -> None:
    workers: list[Worker] = []
    done_steps: dict[int, int] = {}

    def step(worker: Worker, message: tuple, count: int = 1):
        m = worker.measurement
        try:
            reply = worker.ask(message)
        except WorkerLost as exc:
            worker.stop()
            m.fail(str(exc), crashed=True)
            workers.remove(worker)
            tick(_label(m), plan.steps_per_row() - done_steps[id(m)])
            return None
        done_steps[id(m)] += count
        tick(_label(m), count)
        if len(workers) > 1:
            worker.settle()
        return reply

    try:
        for m in group:  # loads one at a time, so load times are not contended by each other
            done_steps[id(m)] = 0
            worker = Worker(context, m, plan.timeout, targets.get(id(m), serve))
            try:
                reply = worker.receive("load")
            except WorkerLost as exc:
                worker.stop()
                m.fail(str(exc), crashed=True)
                tick(_label(m), plan.steps_per_row())
                continue
            if reply[0] == "unavailable":
                m.fail(reply[1])
                worker.stop()
                tick(_label(m), plan.steps_per_row())
                continue
            info = reply[1]
            m.load_s, m.first_ms, m.device = info["load_s"], info["first_ms"], info["device"]
            m.has_stages, m.source = info["has_stages"], info["source"]
            m.compile_s, m.sgemm_flops = info.get("compile_s"), info.get("sgemm_flops")
            workers.append(worker)
            done_steps[id(m)] += 1
            tick(_label(m), 1)
            worker.settle()  # its first call's spinning threads must not slow the next row's load
        for worker in workers:
            if plan.warmup:
                step(worker, ("warmup", plan.warmup), plan.warmup)
        for round_ in range(plan.runs):
            for worker in _ordered(workers, round_):
                reply = step(worker, ("call",))
                if reply:
                    worker.measurement.times.append(reply[1])
        for round_ in range(plan.stage_runs):
            for worker in _ordered(workers, round_):
                m = worker.measurement
                if not m.has_stages:  # a raw engine has no split: its infer time is its latency
                    done_steps[id(m)] += 1
                    tick(_label(m), 1)
                    continue
                reply = step(worker, ("staged",))
                if reply:
                    m.stages.append(reply[1])
        for worker in workers:
            reply = step(worker, ("finish",))
            if reply:
                worker.measurement.peak_rss_mb = reply[1]["peak_rss_mb"]
                worker.process.join(10)
    finally:
        for worker in workers:
            worker.stop()
