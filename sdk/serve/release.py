"""Memory given back after a large request, so that a server returns to near its idle size instead of
keeping its largest request's peak for good.

Two things keep that peak. The engine's own arena keeps every block a run asked for: ONNX Runtime's
CPU arena held the convolution buffers of srcnn3's x2 windows, and the server stayed at 1790 MiB (139
idle) ten seconds after one 1600x1600 x2 request. And glibc's malloc keeps what numpy and the codecs
freed, in one arena per worker thread, for the next allocation. So half a second after the last large
request the server asks the engine to shrink its arena (``Session.release_memory``, run on the
batcher's thread like any engine call) and glibc to return what is free (``malloc_trim``; nothing
where the C library is not glibc). Turning the arena off instead cost 46% on each 272x272 window
(fresh pages every run); this costs one tiny run after a burst of large requests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("sdk.serve")

# Results of at least this many pixels (or raw outputs of this many elements / 3) leave tens of
# megabytes behind; smaller ones are not worth the tiny run and the walk over every malloc arena.
LARGE_PIXELS = 2**20
DELAY_S = 0.5  # after the last large request: one release for a burst of them


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class Releaser:
    """Releases memory DELAY_S after the last large request, on a timer thread."""

    def __init__(self, batcher, session, delay_s: float = DELAY_S):
        self.batcher = batcher
        self.session = session
        self.delay_s = delay_s
        self._trim = malloc_trim()
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.releases = 0

    def after(self, pixels: int) -> None:
        """A request whose result had ``pixels`` pixels is done."""
        if pixels < LARGE_PIXELS:
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.delay_s, self.release)
            self._timer.daemon = True
            self._timer.start()

    def release(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.batcher.call(self.session.release_memory).result(timeout=60)
        except Exception as exc:  # shutting down, or the engine refused: memory stays, requests go on
            log.debug("memory release skipped: %s", exc)
        if self._trim is not None:
            self._trim(0)
        self.releases += 1

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
