"""Calling off a running call: a token the caller keeps and may cancel from any thread, or give a deadline.

A Predictor call that holds a :class:`CancelToken` checks it before each engine call (so a tiled image
stops between its windows, on every backend), and an engine that can stop part-way through one call
(ONNX Runtime's ``RunOptions.terminate``, through :meth:`sdk.Session.run_cancellable`) is told to stop
the moment the token is cancelled. Either way the call raises :class:`sdk.Cancelled` and the CPU (or
GPU) it was using is free again: a server's timeout bounds the work, not only the answer.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from .errors import Cancelled, InputError

log = logging.getLogger(__name__)


class CancelToken:
    """Cancelled by :meth:`cancel` (from any thread), or by itself ``timeout`` seconds after it was made.

    >>> token = CancelToken(timeout=5)
    >>> p(image, scale=4, cancel=token)     # raises sdk.Cancelled after about 5 s; the engine stops too
    >>> threading.Timer(1, token.cancel).start()   # or call it off from another thread
    """

    def __init__(self, timeout: float | None = None) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < math.inf
        ):
            raise InputError(f"timeout={timeout!r}: pass seconds as a number >= 0, or None for no deadline")
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._watchers: dict[int, Callable[[], object]] = {}
        self._keys = itertools.count()

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Call the work off; what watches this token (an engine's running call) is told at once.
        Idempotent: the first reason stays."""
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            watchers = list(self._watchers.values())
        for watcher in watchers:  # outside the lock: a watcher may look at the token
            try:
                watcher()
            except Exception:  # a plugin's faulty stop must not fail the canceller (a server's event loop)
                log.exception("a CancelToken watcher failed; the work stops at its next check instead")

    @property
    def cancelled(self) -> bool:
        """Whether the work is called off (by :meth:`cancel`, or because the deadline passed)."""
        if self._reason is None and self._deadline is not None and time.monotonic() >= self._deadline:
            self.cancel(f"its deadline of {self._timeout:g} s passed")
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def check(self) -> None:
        """Raise :class:`sdk.Cancelled` when the work is called off; else nothing."""
        if self.cancelled:
            raise Cancelled(f"the call was called off ({self._reason})")

    @contextlib.contextmanager
    def watch(self, stop: Callable[[], object]) -> Iterator[None]:
        """While inside, ``stop()`` is called once the token is cancelled or its deadline passes (on the
        cancelling thread, or a timer's); at once when it already is. ``stop`` must be quick and may run
        twice (a cancel racing the entry): setting an engine's flag is the intended use."""
        with self._lock:
            key = next(self._keys)
            self._watchers[key] = stop
        timer = None
        if self._deadline is not None and self._reason is None:
            # A timer only while something watches: a deadline nobody waits on costs no thread.
            timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._expire)
            timer.daemon = True
            timer.start()
        try:
            if self.cancelled:
                stop()
            yield
        finally:
            with self._lock:
                del self._watchers[key]
            if timer is not None:
                timer.cancel()

    def _expire(self) -> None:
        # A timer may wake a hair before the deadline: wait out the rest, so that it does fire.
        while not self.cancelled and self._deadline is not None:
            time.sleep(max(0.0, self._deadline - time.monotonic()) + 0.001)

    def __repr__(self) -> str:
        state = f"cancelled: {self._reason}" if self._reason else "live"
        return f"CancelToken({state})"


@contextlib.contextmanager
def all_of(tokens: Sequence[CancelToken]) -> Iterator[CancelToken]:
    """A token that is cancelled once every one of ``tokens`` is: for one engine call shared by several
    callers (a server's batch of windows from many requests), which may stop only when nobody wants it."""
    if len(tokens) == 1:
        yield tokens[0]
        return
    joined = CancelToken()

    def one_gone() -> None:
        if all(t.cancelled for t in tokens):
            joined.cancel("every caller sharing this engine call called it off")

    with contextlib.ExitStack() as stack:
        for token in tokens:
            stack.enter_context(token.watch(one_gone))
        yield joined
