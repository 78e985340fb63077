"""One benchmark row in its own process: a crash costs only that row, and peak memory is its own.

The parent drives the worker through a pipe, one step at a time, so that it can interleave the
rows call by call. Messages in: ``("warmup", n)``, ``("call",)``, ``("staged",)``, ``("finish",)``.
Messages out: ``("ready", info)``, ``("unavailable", reason)``, ``("error", text)``,
``("timed", seconds)``, ``("staged", (pre, infer, post))``, ``("done", info)``.
"""

from __future__ import annotations

import sys
import time
import traceback

import numpy as np

from ..errors import BackendUnavailableError


def peak_rss_mb() -> float:
    """This process's peak resident set size since it started its program, in MiB.

    Linux's VmHWM, not getrusage's ru_maxrss: the kernel folds into ru_maxrss (RUSAGE_SELF, and the
    parent's wait4 alike) the memory the process had before exec, i.e. its parent's at the fork. A
    benchmark that holds 4 GB and starts a run read 4 GB for it whatever the run used (benchmarks/
    video.py did: 4,009 MiB for a job whose own peak was 1,134)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


# The last line of a child Python program that must report its own peak (benchmarks/video.py and
# photos.py run jobs so: their wait4 figure would count the benchmark's memory at the fork).
REPORT_PEAK = "from sdk.bench.worker import peak_rss_mb; print(peak_rss_mb())"


def reported_peak_bytes(stdout: str) -> int:
    """The peak a child printed with REPORT_PEAK as its last line, in bytes."""
    return int(float(stdout.split()[-1]) * 2**20)


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def serve(conn, job) -> None:
    """The worker's main loop (the target of the spawned process)."""
    from .runners import make_runner

    try:
        runner = make_runner(job)
        start = time.perf_counter()
        runner.load()
        loaded = time.perf_counter()
        result = runner.call()
        first = time.perf_counter() - loaded
        # Any call's pictures will do for the accuracy check; the first one is already at hand.
        images = runner.images(result)
        if images is not None:  # the floor row computes no picture
            np.save(job.output_path, images)
    except BackendUnavailableError as exc:
        conn.send(("unavailable", str(exc)))
        return
    except Exception as exc:  # the row failed; the parent records why and goes on
        conn.send(("error", _describe(exc)))
        return
    conn.send(
        (
            "ready",
            {
                "load_s": loaded - start,
                "first_ms": first * 1e3,
                "device": runner.device,
                "has_stages": runner.has_stages,
                "source": getattr(runner, "source", ""),
                "compile_s": getattr(runner, "compile_s", None),
                "sgemm_flops": getattr(runner, "sgemm_flops", None),
            },
        )
    )
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            if message[0] == "warmup":
                for _ in range(message[1]):
                    runner.call()
                conn.send(("warm", None))
            elif message[0] == "call":
                start = time.perf_counter()
                runner.call()
                conn.send(("timed", time.perf_counter() - start))
            elif message[0] == "staged":
                conn.send(("staged", runner.staged()))
            elif message[0] == "finish":
                conn.send(("done", {"peak_rss_mb": peak_rss_mb()}))
                return
        except Exception as exc:
            conn.send(("error", _describe(exc)))
            return
