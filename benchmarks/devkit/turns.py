"""Calls taking turns: how every side-by-side benchmark of engine sessions times its variants.

Each variant is a call; after ``warmup`` untimed calls each, the variants take turns call by call
for ``runs`` rounds, in an order rotated every round (no variant always follows the same one), with a
pause after each call so that a spinning thread pool has gone quiet before the next variant starts.
Each call is timed on two clocks: wall time, and the CPU time of the whole process (every thread's),
which on a machine shared with other jobs counts the work rather than the queue for the cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

PAUSE_S = 0.1  # ONNX Runtime's pool spins for a few ms after a run; OpenVINO's and MNN's less


def take_turns(
    calls: Mapping[str, Callable[[], object]], runs: int, warmup: int = 1
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall, cpu): name -> seconds of each timed call, the calls taking turns as described above."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started, used = time.perf_counter(), time.process_time()
            calls[name]()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)
            time.sleep(PAUSE_S)
    return wall, cpu
