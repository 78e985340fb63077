"""The server's logging: lines to stderr, the access log written in batches by a thread of its own."""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import threading


@contextlib.contextmanager
def server_logging(level: str):
    """Log lines to stderr; the access log's collected in memory and written by a thread of its own."""
    lines = BatchedHandler(sys.stderr)
    lines.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("sdk.serve.access")
    access.handlers[:] = [lines]
    access.propagate = False
    access.setLevel(logging.INFO if level in ("debug", "info") else logging.WARNING)
    logging.getLogger("sdk").setLevel(level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        yield
    finally:
        lines.stop()


class BatchedHandler(logging.Handler):
    """Records kept in memory and written to ``stream`` by a thread of its own, all that came in
    the last ``interval`` seconds in one write (and what is left when stopped).

    A write to stderr is a system call, and waking a thread to make it costs the waker a context
    switch: either way the event loop would pay for every request. On the 2-core build machine the
    access line's flush was the loop's largest item under load (0.27 ms a request of espcn 64x64 at
    8 clients, by cProfile), and a logging.handlers.QueueListener, woken per record, still cost
    0.05 to 0.12 ms of CPU a request. Appending to a deque wakes nobody; every line is still
    written, in order, at most ``interval`` late."""

    def __init__(self, stream, interval: float = 0.02):
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._records: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._writing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sdk-serve-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)  # atomic: no lock, no wake-up

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        with self._writing:  # one writer at a time, so that lines keep their order
            lines = []
            while self._records:
                record = self._records.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except Exception:  # a closed or broken stderr must not stop the server
                    pass

    def stop(self) -> None:
        """Write what is left and end the thread (the server is done)."""
        self._stop.set()
        self._thread.join(5)
        self.flush()

    # close() is logging's, and is called early: uvicorn's logging.config.dictConfig closes every
    # handler there is, ours included, when the server starts. So closing only writes what is in
    # hand; the thread goes on until stop().
    def close(self) -> None:
        self.flush()
        super().close()
