#!/usr/bin/env python
"""The SDK's own cost per call, in one process: ``Predictor`` calls against the engine session they
end up in (the backend's own Session for the call's factor, fed tensors prepared beforehand),
interleaved call by call so that the machine's drift hits every row alike.

    python benchmarks/overhead.py --model srcnn srcnn3 espcn --size 32 256 --pairs 40 \
        [--batch 16 --batch-side 64 --batch-size 16 4] [--backend ort-cpu] [--value-range 0 1]

Per model and size: the single-image call against the engine (ratio of medians, ms above it, the
median of the pairs' differences, the same for the calling thread's CPU time, and the SDK's own work
timed with the engine replaced by a replay of its output, each call after a real engine run, in wall
and in CPU time: on a busy machine that CPU time is the steady figure, the others move by tenths of a
millisecond at 32²). Then a batch
of ``--batch`` images of ``--batch-side``²: ``predict_batch`` (for each ``--batch-size``) against as
many single calls and against the engine run on the whole batch (and on each image alone), per image.
``benchmarks/compare.py`` compares separate processes; this is the finer measurement of the same
ratio (the issue's targets: <= 1.03 at 256², <= 0.2 ms at 32²). The engine row is the Predictor's
own engine session rather than a second one (``Backend.raw_runner``): two ONNX Runtime sessions in
one process each keep a thread pool that spins after a run, so whichever call follows the other
session's would pay for its spinning.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from sdk import Predictor
from sdk.backend import Session
from sdk.optimize.session import FactorSession


def images(count: int, side: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(count)]


def engine(predictor: Predictor, batch: list[np.ndarray], scale: int) -> Callable[[], object]:
    """One run of the engine session on ``batch``, its feeds prepared now."""
    pipeline = predictor.pipeline
    feeds = pipeline.feeds(pipeline.prepare(np.stack(batch), scale).tensor, scale)
    session = predictor.session
    if hasattr(session, "route"):  # a runtime-scale model: one engine session per factor
        session, feeds = session.route(feeds)
    return lambda: session.run(feeds)


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds of each call per round, the calls taking turns round by round."""
    for _ in range(warmup):  # first calls pay for allocations and, per factor, a session
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            call()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.thread_time() - start_cpu)
    interleaved.cpu = cpu  # the calling thread's CPU seconds, per call (see single())
    return times


class _Replay(Session):
    """Returns a copy of one engine result: the Predictor's call then costs its own work alone."""

    def __init__(self, session: Session, result: dict):
        self.inputs, self.outputs, self.result = session.inputs, session.outputs, result

    def run(self, feeds):
        return {name: value.copy() for name, value in self.result.items()}


def own_work(predictor: Predictor, image: np.ndarray, scale: int, rounds: int) -> tuple[float, float]:
    """Median seconds (wall, and the calling thread's CPU) of the SDK's own work in one call: the call with its engine replaced by a
    replay of the engine's output, minus the replay alone, each right after a real engine run, which
    leaves the caches as cold as they are in use. A runtime-scale model keeps its factor routing
    (a FactorSession over replays): choosing the factor's session is the SDK's work too. Unlike the
    interleaved difference, a busy machine hardly moves the CPU figure."""
    pipeline = predictor.pipeline
    real = predictor.session
    every = pipeline.feeds(pipeline.prepare(image[None], scale).tensor, scale)
    session, feeds = real.route(every) if hasattr(real, "route") else (real, every)
    result = session.run(feeds)
    replay = _Replay(session, result)
    stand_in: Session = replay
    if hasattr(real, "route"):
        baked = [name for name in every if name not in feeds]
        stand_in = FactorSession(_Replay(real, result), lambda key: replay, baked)
    predictor._session = stand_in  # a benchmark may reach inside
    try:
        found = interleaved(
            {
                "engine": lambda: session.run(feeds),
                "sdk": lambda: predictor(image, scale=scale),
                "engine again": lambda: session.run(feeds),
                "replay": lambda: replay.run(feeds),
            },
            rounds,
        )
    finally:
        predictor._session = real
    cpu = interleaved.cpu
    return (
        statistics.median(found["sdk"]) - statistics.median(found["replay"]),
        statistics.median(cpu["sdk"]) - statistics.median(cpu["replay"]),
    )


def single(predictor: Predictor, size: int, scale: int, pairs: int) -> None:
    image = images(1, size, size)[0]
    own, own_cpu = own_work(predictor, image, scale, max(pairs, 50) if size <= 64 else pairs)
    found = interleaved(
        {"sdk": lambda: predictor(image, scale=scale), "engine": engine(predictor, [image], scale)}, pairs
    )
    sdk_s, raw_s = statistics.median(found["sdk"]), statistics.median(found["engine"])
    # The median of the pairs' differences: each pair ran back to back, so drift between pairs cancels.
    extra = statistics.median(a - b for a, b in zip(found["sdk"], found["engine"]))
    # The SDK's own work runs on the calling thread: its CPU time is what a busy machine cannot blur
    # (a descheduled engine thread makes the whole call wait, the thread's CPU clock does not run).
    cpu = interleaved.cpu
    cpu_extra = statistics.median(a - b for a, b in zip(cpu["sdk"], cpu["engine"]))
    print(
        f"  {size}x{size}: sdk {sdk_s * 1e3:.2f} ms, engine {raw_s * 1e3:.2f} ms, ratio {sdk_s / raw_s:.3f}, "
        f"{(sdk_s - raw_s) * 1e3:+.2f} ms; median of pair differences {extra * 1e3:+.3f} ms, "
        f"of the calling thread's CPU time {cpu_extra * 1e3:+.3f} ms; the SDK's own work {own * 1e3:.3f} ms "
        f"(CPU {own_cpu * 1e3:.3f} ms)"
    )


def batch(predictor: Predictor, count: int, side: int, sizes: list[int], scale: int, rounds: int) -> None:
    batch_images = images(count, side, 7)
    calls = {
        f"predict_batch({size})": (
            lambda size=size: predictor.predict_batch(batch_images, scale=scale, batch_size=size)
        )
        for size in sizes
    }
    calls["single calls"] = lambda: [predictor(image, scale=scale) for image in batch_images]
    one = engine(predictor, batch_images[:1], scale)
    calls["engine, batch 1 each"] = lambda: [one() for _ in range(count)]
    if predictor.dynamic_batch:
        calls[f"engine, batch {count}"] = engine(predictor, batch_images, scale)
    found = {name: statistics.median(times) for name, times in interleaved(calls, rounds, warmup=2).items()}
    single_s, one_s = found["single calls"], found["engine, batch 1 each"]
    whole_s = found.get(f"engine, batch {count}")
    print(f"  {count} images of {side}x{side}, median of {rounds} interleaved rounds, ms per image:")
    for name, seconds in found.items():
        ratios = [f"{seconds / single_s:.2f}x single calls", f"{seconds / one_s:.2f}x engine batch 1"]
        if whole_s:
            ratios.append(f"{seconds / whole_s:.2f}x engine batch {count}")
        print(f"    {name:22s} {seconds / count * 1e3:7.2f}  ({', '.join(ratios)})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["srcnn3"], help="bundled model names or .onnx paths")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--scale", type=int, default=3, help="for runtime-scale models; fixed-scale ones run their own")
    parser.add_argument("--size", type=int, nargs="*", default=[32, 256])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=0, help="images in the batch figure (0: none)")
    parser.add_argument("--batch-side", type=int, default=64)
    parser.add_argument("--batch-size", type=int, nargs="+", default=None, help="predict_batch's batch_size(s)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the batch figure")
    parser.add_argument(
        "--value-range",
        type=float,
        nargs=2,
        default=None,
        help="declare the model's value range (e.g. 0 1), to time an RGB 0..1 pipeline",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run for the test suite (every bundled model, 16x16, few calls)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.size, args.pairs = ["srcnn", "srcnn3", "espcn"], [16], 2
        args.batch, args.batch_side, args.batch_size, args.rounds = 2, 16, [2, 1], 1
    pipeline = {"value_range": list(args.value_range)} if args.value_range else None
    for model in args.model:
        with Predictor(model, backend=args.backend, pipeline=pipeline) as predictor:
            scale = predictor.scale or args.scale
            print(
                f"{model} x{scale} on {predictor.backend} ({predictor.spec.color}, value range "
                f"{tuple(predictor.spec.value_range)}): median of {args.pairs} interleaved pairs"
            )
            for size in args.size:
                single(predictor, size, scale, args.pairs)
            if args.batch:
                batch(predictor, args.batch, args.batch_side, args.batch_size or [args.batch], scale, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
