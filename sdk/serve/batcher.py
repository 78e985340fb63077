"""The batcher: one thread that batches tiles across requests into engine calls.

(Named for its job: "engine" is the inference library a Backend wraps, and the calls into it.)
Requests hand in prepared tensors (N x C x h x w float32, already in the model's space); the thread
stacks those of one (h, w, scale) into a single engine call of at most ``max_batch`` tiles and hands
each request its slice of the output. Raw-tensor requests (the Open Inference Protocol's /infer) are
batched the same way, as Triton's dynamic batcher batches them: feeds whose batched inputs agree in
everything but the batch axis, and whose other inputs (a runtime scale factor) are equal, share one
``run_feeds`` call, and each request gets its rows of every output. Everything else (decoding,
pre/post-processing, encoding) runs in the request's worker threads, so the engine never waits on
them. The thread waits up to ``max_delay`` for a fuller batch only while some request is still
preparing a tensor: with nobody coming it runs at once, so a lone request pays no batching delay.
A lone request may even run its tiles on its own worker thread (``submit(..., inline=True)``): when
the engine is idle, nothing is queued and nobody else is about to submit, handing the tiles to the
batcher's thread and the result back would only add two thread wake-ups (about 0.15 ms together on the
2-core build machine, a few percent of a 64x64 image's whole time). The engine still runs one call
at a time: requests that come meanwhile queue, and the batcher's thread batches them when it is free.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ..cancel import CancelToken, all_of

log = logging.getLogger(__name__)

# On CPU, windows are batched across requests only up to this many input pixels per engine call:
# small windows gain from sharing a call (less per-call overhead), while a 256x256 window already
# keeps the cores busy and a batch of them ran slower than one at a time (benchmarks/results/serve.md).
CPU_BATCH_PIXELS = 128 * 128 * 4


@dataclass
class _Job:
    key: tuple
    tensor: np.ndarray | None
    scale: int | None
    future: Future
    call: Callable[[], object] | None = None  # an exclusive job runs alone
    limit: int = 0  # most tiles in one call with this job (0: the batcher's max_batch)
    feeds: dict | None = None  # a raw-tensor job: the model's feeds, ``batched`` names on the batch axis
    batched: frozenset = frozenset()
    cancel: CancelToken | None = None  # the request's: the call stops once every job in it is called off
    arrived: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        if self.feeds is not None:
            return len(self.feeds[next(iter(self.batched))])
        return 1 if self.tensor is None else len(self.tensor)


class Batcher:
    """Runs ``run_batch(tensor, scale, cancel) -> tensor`` on one thread, batching submissions.

    ``cancel`` is None, or a :class:`sdk.CancelToken` that is cancelled once every request whose tiles
    are in the call has called its own off (each submitted with ``cancel=``): a timed-out request stops
    the engine's work, not only its answer, while a call other requests still wait for runs on."""

    def __init__(
        self,
        run_batch: Callable[[np.ndarray, int, CancelToken | None], np.ndarray],
        max_batch: int,
        max_delay_s: float,
        observe: Callable[[int, float], None] | None = None,
        run_feeds: Callable[[dict, CancelToken | None], dict] | None = None,
    ):
        self._run_batch = run_batch
        self._run_feeds = run_feeds
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._observe = observe or (lambda size, seconds: None)
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._preparing = 0
        self._busy = False  # a call is running (on the batcher's thread or inline on a worker)
        self._closing = False
        self.calls = 0
        self._thread = threading.Thread(target=self._loop, name="sdk-serve-batcher", daemon=True)
        self._thread.start()

    # -- the request side ------------------------------------------------------------------------

    def preparing(self, delta: int) -> None:
        """A request says it is about to submit (+1) or has submitted / given up (-1)."""
        with self._cond:
            self._preparing += delta
            self._cond.notify_all()

    def submit(
        self, tensor: np.ndarray, scale: int, limit: int = 0, inline: bool = False, cancel: CancelToken | None = None
    ) -> Future:
        """Queue a stack of tiles; the future gets the engine's output for exactly these tiles.
        ``limit`` caps the tiles of the call it joins (memory, or a model without a batch axis).

        ``inline``: the caller is a thread that may run the call itself, and it counts itself among
        the requests preparing (``preparing(+1)`` before it prepared these tiles). When no call is
        running, nothing is queued and no other request is preparing, the call runs here, now, and
        the future comes back done."""
        key = ("tiles", tensor.shape[1:], tensor.dtype.str, scale, limit)
        job = _Job(key, tensor, scale, Future(), limit=limit, cancel=cancel)
        with self._cond:
            alone = inline and not (self._busy or self._jobs or self._closing) and self._preparing <= 1
            self._busy = self._busy or alone
        if not alone:
            return self._put(job)  # (which refuses it when the batcher is closing)
        try:
            self._run([job])
        finally:
            self._idle()
        return job.future

    def submit_feeds(
        self, feeds: dict, batched: frozenset, limit: int = 0, cancel: CancelToken | None = None
    ) -> Future:
        """Queue one raw-tensor request; the future gets the outputs' rows of exactly its items.
        ``batched`` names the inputs that carry the batch axis (at least one); the others must be equal
        in every request that shares the call, so their bytes are part of the key."""
        shapes = tuple(sorted((n, feeds[n].shape[1:], feeds[n].dtype.str) for n in batched))
        shared = tuple(sorted((n, v.shape, v.dtype.str, v.tobytes()) for n, v in feeds.items() if n not in batched))
        key = ("feeds", shapes, shared, limit)
        return self._put(_Job(key, None, None, Future(), limit=limit, feeds=feeds, batched=batched, cancel=cancel))

    def call(self, fn: Callable[[], object]) -> Future:
        """Run ``fn`` on the batcher's thread, alone (raw-tensor requests share the one engine)."""
        return self._put(_Job(("call",), None, None, Future(), call=fn))

    def _put(self, job: _Job) -> Future:
        with self._cond:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            self._jobs.append(job)
            self._cond.notify_all()
        return job.future

    @property
    def queued(self) -> int:
        with self._cond:
            return sum(j.size for j in self._jobs)

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- the batcher's thread --------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            finally:
                self._idle()

    def _idle(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _next_batch(self) -> list[_Job] | None:
        """The next jobs to run together (the engine is then busy until _idle), or None to stop."""
        with self._cond:
            while True:
                while self._busy or (not self._jobs and not self._closing):
                    self._cond.wait()
                if not self._jobs:
                    return None
                # Cancelled jobs (timed-out or disconnected clients) give their place up here.
                live = [j for j in self._jobs if not j.future.cancelled()]
                if len(live) != len(self._jobs):
                    self._jobs = deque(live)
                    continue
                first = self._jobs[0]
                if first.call is not None:
                    self._jobs.popleft()
                    self._busy = True
                    return [first]
                deadline = first.arrived + self.max_delay_s
                most = min(self.max_batch, first.limit or self.max_batch)
                while True:
                    chosen, total = self._gather(first.key, most)
                    remaining = deadline - time.monotonic()
                    if total >= most or self._preparing <= 0 or remaining <= 0 or self._closing:
                        break
                    self._cond.wait(remaining)
                for job in chosen:
                    self._jobs.remove(job)
                self._busy = True
                return chosen

    def _gather(self, key: tuple, most: int) -> tuple[list[_Job], int]:
        chosen: list[_Job] = []
        total = 0
        for job in self._jobs:
            if job.key == key and not job.future.cancelled():
                if chosen and total + job.size > most:
                    break
                chosen.append(job)
                total += job.size
        return chosen, total

    def _run(self, batch: list[_Job]) -> None:
        batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not batch:
            return
        started = time.perf_counter()
        first = batch[0]
        result: Any
        try:
            if first.call is not None:
                result = first.call()
                size = 1
            elif first.feeds is not None:
                feeds = [cast(dict, j.feeds) for j in batch]  # jobs of one key are all raw-tensor jobs
                stacked = {
                    n: (np.concatenate([f[n] for f in feeds]) if n in first.batched and len(batch) > 1 else v)
                    for n, v in first.feeds.items()
                }
                size = sum(j.size for j in batch)
                with _called_off(batch) as cancel:  # the app gives run_feeds when it submits feeds
                    result = cast(Callable, self._run_feeds)(stacked, cancel)
                uneven = [n for n, v in result.items() if len(batch) > 1 and len(v) != size]
                if uneven:  # the app batches only models whose outputs all have the batch axis
                    raise RuntimeError(f"outputs {uneven} of a batched call do not have its {size} rows")
            else:
                tensors = [cast(np.ndarray, j.tensor) for j in batch]  # a tile job carries its tensor
                tensor = tensors[0] if len(tensors) == 1 else np.concatenate(tensors)
                size = len(tensor)
                with _called_off(batch) as cancel:
                    result = self._run_batch(tensor, cast(int, first.scale), cancel)
        except BaseException as exc:  # every waiting request gets the error; the thread goes on
            for job in batch:
                job.future.set_exception(exc)
            return
        finally:
            self.calls += 1
        self._observe(size, time.perf_counter() - started)
        if batch[0].call is not None or len(batch) == 1:
            batch[0].future.set_result(result)
            return
        if batch[0].feeds is not None:  # every output, sliced alike

            def rows(start, stop):
                return {n: v[start:stop] for n, v in result.items()}
        else:

            def rows(start, stop):
                return result[start:stop]

        offset = 0
        for job in batch:
            job.future.set_result(rows(offset, offset + job.size))
            offset += job.size


def _called_off(batch: list[_Job]) -> contextlib.AbstractContextManager[CancelToken | None]:
    """The token of one engine call: cancelled when every job's is (None when a job has none)."""
    tokens = [j.cancel for j in batch]
    if not all(t is not None for t in tokens):
        return contextlib.nullcontext(None)
    return all_of(cast(list[CancelToken], tokens))
