"""The fp32 floor: the time a model's FLOPs take at the rate numpy's float32 sgemm reaches here.

Which rate. numpy's BLAS is not equally fast at every size (on the 2-core AVX-512 VM: about 200
GFLOP/s at 2048, 250 and more from about 3000 on), so a few square sizes are probed and the fastest
is the one timed. And one size's calls are not equally fast either: on that VM the same 3436-sided
product took 244 to 452 ms within one run (330 down to 180 GFLOP/s; the engines' calls spread the
same way, the best of them near 300 GFLOP/s). Only the machine's other work ever slows a call; none
makes it faster. So the floor is the FLOPs at the rate of the fastest sgemm call of the run - the
rate this hardware reached, undisturbed - and a row's fraction of it is taken on that row's fastest
call too (sdk.bench.rows): both sides are their least disturbed calls of the same interleaved run.
The mean of each, which the benchmark used before, made the fraction depend on how often each row
happened to be slowed: the same Compact engine read 0.88 and 1.10 of the floor in two runs.
"""

from __future__ import annotations

import time

import numpy as np

# Square matrix sides the probe tries besides the model's own; the model's side is capped because
# the rate no longer grows past a few thousand and the probe's calls would take seconds.
PROBE_SIDES = (1024, 1536, 2048, 3072)
MAX_SIDE = 4096
PROBE_ROUNDS, PROBE_CALLS = 2, 2


def model_side(flops: float) -> int:
    """The side of the square product with about as many FLOPs as ``flops`` (2 n^3), within bounds."""
    return min(MAX_SIDE, max(64, int(round((flops / 2) ** (1 / 3)))))


def fastest_side(flops: float) -> tuple[int, list[int]]:
    """(the fastest side, the sides probed): the probe sizes and the model's own, in rounds in which
    every size takes its turn (a slow spell of the machine then does not single out one size), each
    size's best call counting."""
    sides = sorted({model_side(flops), *PROBE_SIDES})
    best = dict.fromkeys(sides, 0.0)
    for _ in range(PROBE_ROUNDS):
        for side in sides:
            best[side] = max(best[side], sgemm_rate(side, PROBE_CALLS))
    return max(sides, key=best.__getitem__), sides


def sgemm_rate(side: int, calls: int = 3) -> float:
    """FLOP/s of numpy's float32 matmul at ``side``, best of ``calls`` after one warm-up."""
    a = np.ones((side, side), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        np.matmul(a, a, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * side**3 / best
