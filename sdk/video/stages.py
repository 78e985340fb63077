"""A pipeline, not a loop: stages in threads of their own, joined by bounded queues.

Each stage takes one item at a time (or, for a batching stage, as many as are waiting, up to its
batch size) and hands its results on. The queues hold a few items each, so a slow stage holds the
others back instead of letting memory grow, and every stage works while the others do: PyAV and
ONNX Runtime release the GIL while they decode, run and encode, and numpy while it converts.

A stage with ``workers`` > 1 runs that many calls of its work at once (the engine on the CPU: one
single-threaded engine call per core, see :mod:`sdk.video.engine`) and still hands its results on in
the order the items came: a dispatching thread submits the calls, a collecting thread waits for each
in turn. Calls in flight are bounded by the workers (plus one waiting), so memory stays flat.

Markers (anything that is a :class:`Marker`) pass through every stage unchanged and in order; a
batching stage never batches across one (a segment's frames are never batched with the next's). The
first error in any stage (or any worker) stops all of them and is raised to the consumer; so is a stop
asked by the consumer (an interrupted job).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

_POLL_S = 0.1  # how often a blocked stage looks whether the job was stopped


class Marker:
    """An item stages pass on untouched (the start or end of a segment)."""


@dataclass
class Stage:
    """``work(items) -> results`` on lists of up to ``batch`` items (1: one at a time), with up to
    ``workers`` calls of ``work`` running at once (``work`` must then be safe to call from threads)."""

    name: str
    work: Callable[[list], list]
    batch: int = 1
    workers: int = 1


class _Stopped(Exception):
    pass


class Pipeline:
    """Run ``items`` through ``stages``; iterate the last stage's results in order."""

    def __init__(self, items: Iterable, stages: list[Stage], depth: int = 4):
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=depth) for _ in range(len(stages) + 1)]
        self._threads = [threading.Thread(target=self._feed, args=(items,), name="sdk-video-source", daemon=True)]
        for i, stage in enumerate(stages):
            inbox, outbox, name = self._queues[i], self._queues[i + 1], f"sdk-video-{stage.name}"
            if stage.workers <= 1:
                self._threads.append(threading.Thread(target=self._run, args=(stage, inbox, outbox), name=name))
                continue
            # Futures in the order of their items, at most ``workers`` waiting beside the one collected.
            pending: queue.Queue = queue.Queue(maxsize=stage.workers)
            self._threads.append(
                threading.Thread(target=self._dispatch, args=(stage, inbox, pending), name=f"{name}-dispatch")
            )
            self._threads.append(threading.Thread(target=self._collect, args=(pending, outbox), name=name))
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def __iter__(self) -> Iterator:
        out = self._queues[-1]
        while True:
            item = self._get(out)
            if item is _END:
                break
            yield item
        self._raise()

    def stop(self) -> None:
        """Stop every stage and wait for them (what was in flight is dropped)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- the threads --------------------------------------------------------------------------------

    def _feed(self, items: Iterable) -> None:
        try:
            for item in items:
                self._put(self._queues[0], item)
        except _Stopped:
            return
        except BaseException as exc:
            self._fail(exc)
        self._put_end(self._queues[0])

    def _batches(self, stage: Stage, inbox: queue.Queue) -> Iterator:
        """The stage's input as markers and lists of up to ``stage.batch`` items, never across a marker."""
        held = None  # an item taken while gathering a batch that did not fit it
        while True:
            item = held if held is not None else self._get(inbox)
            held = None
            if item is _END:
                return
            if isinstance(item, Marker):
                yield item
                continue
            batch = [item]
            while len(batch) < stage.batch:
                try:
                    extra = inbox.get_nowait()
                except queue.Empty:
                    break
                if extra is _END or isinstance(extra, Marker):
                    held = extra
                    break
                batch.append(extra)
            yield batch

    def _run(self, stage: Stage, inbox: queue.Queue, outbox: queue.Queue) -> None:
        def work() -> Iterator:
            for batch in self._batches(stage, inbox):
                yield from [batch] if isinstance(batch, Marker) else stage.work(batch)

        self._hand_on(work(), outbox)

    def _hand_on(self, results: Iterator, outbox: queue.Queue) -> None:
        """Put ``results`` into ``outbox`` and then the end; a stop ends quietly, an error stops all."""
        try:
            for result in results:
                self._put(outbox, result)
        except _Stopped:
            return
        except BaseException as exc:
            self._fail(exc)
            return
        self._put_end(outbox)

    def _dispatch(self, stage: Stage, inbox: queue.Queue, pending: queue.Queue) -> None:
        """Submit the stage's calls to its workers; their futures go to the collector in input order."""
        pool = ThreadPoolExecutor(stage.workers, thread_name_prefix=f"sdk-video-{stage.name}")
        try:
            for batch in self._batches(stage, inbox):
                if isinstance(batch, Marker):
                    done: Future = Future()
                    done.set_result([batch])
                    self._put(pending, done)
                else:
                    self._put(pending, pool.submit(stage.work, batch))
        except _Stopped:
            pass
        except BaseException as exc:
            self._fail(exc)
        else:
            pool.shutdown(wait=False)  # the calls submitted last still run; the collector waits for them
            self._put_end(pending)
            return
        # Stopped: the calls not yet started are dropped, and the running ones finish before stop()
        # returns, as a one-worker stage's call does.
        pool.shutdown(wait=True, cancel_futures=True)

    def _collect(self, pending: queue.Queue, outbox: queue.Queue) -> None:
        """Hand each call's results on in the order the calls were submitted."""

        def results() -> Iterator:
            while True:
                future = self._get(pending)
                if future is _END:
                    return
                yield from self._wait(future)

        self._hand_on(results(), outbox)

    def _wait(self, future: Future) -> list:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return future.result(timeout=_POLL_S)
            except FutureTimeout:
                continue
            except CancelledError:  # dropped by a stop
                raise _Stopped from None

    # -- queues that give way to a stop -------------------------------------------------------------

    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _put_end(self, q: queue.Queue) -> None:
        try:
            self._put(q, _END)
        except _Stopped:
            pass

    def _get(self, q: queue.Queue):
        while True:
            if self._stop.is_set():
                if q is self._queues[-1]:
                    self._raise()
                raise _Stopped
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _fail(self, exc: BaseException) -> None:
        self._errors.append(exc)
        self._stop.set()

    def _raise(self) -> None:
        if self._errors:
            raise self._errors[0]
        if self._stop.is_set():
            raise _Stopped("the pipeline was stopped")


_END = object()
