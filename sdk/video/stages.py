"""A pipeline, not a loop: stages in threads of their own, joined by bounded queues.

Each stage takes one item at a time (or, for a batching stage, as many as are waiting, up to its
batch size) and hands its results on. The queues hold a few items each, so a slow stage holds the
others back instead of letting memory grow, and every stage works while the others do: PyAV and
ONNX Runtime release the GIL while they decode, run and encode, and numpy while it converts.

Markers (anything that is a :class:`Marker`) pass through every stage unchanged and in order; a
batching stage never batches across one (a segment's frames are never batched with the next's). The first error in any stage stops all of them and is
raised to the consumer; so is a stop asked by the consumer (an interrupted job).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

_POLL_S = 0.1  # how often a blocked stage looks whether the job was stopped


class Marker:
    """An item stages pass on untouched (the start or end of a segment)."""


@dataclass
class Stage:
    """``work(items) -> results`` on lists of up to ``batch`` items (1: one at a time)."""

    name: str
    work: Callable[[list], list]
    batch: int = 1


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
            self._threads.append(
                threading.Thread(
                    target=self._run, args=(stage, self._queues[i], self._queues[i + 1]), name=f"sdk-video-{stage.name}"
                )
            )
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

    def _run(self, stage: Stage, inbox: queue.Queue, outbox: queue.Queue) -> None:
        held = None  # an item taken while gathering a batch that did not fit it
        try:
            while True:
                item = held if held is not None else self._get(inbox)
                held = None
                if item is _END:
                    break
                if isinstance(item, Marker):
                    self._put(outbox, item)
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
                for result in stage.work(batch):
                    self._put(outbox, result)
        except _Stopped:
            return
        except BaseException as exc:
            self._fail(exc)
            return
        self._put_end(outbox)

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
