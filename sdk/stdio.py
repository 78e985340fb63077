"""Keep engines' chatter off standard output, which belongs to the SDK's own results.

``sdk backends --json`` and ``sdk info --json`` print JSON on stdout, and a user pipes it into another
program. Engines print there while they start: ``onnxruntime.preload_dlls()`` reports a library it
cannot find with ``print``, ONNX Runtime prints a banner to stdout when it falls back from a failing
execution provider, and some engines' native code ``printf``s (MNN's CPU feature report). So probing
a backend and opening a session run with stdout pointed at stderr, both Python's ``sys.stdout`` and
the process's file descriptor 1: the text is still shown, where it corrupts nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator

# Descriptor 1 and sys.stdout are the process's: the first block to enter (in any thread) redirects
# them, the last to leave restores them. The lock guards only that bookkeeping, never the block itself,
# so a block that waits for another lock (a backend's probe) cannot deadlock against another thread.
_LOCK = threading.Lock()
_depth = 0
_saved: tuple = ()  # (descriptor copy of the real stdout or None, the real sys.stdout)


def _flush_c_stdio() -> None:
    """Native code's buffered stdout must leave before descriptor 1 changes back, or it lands on stdout."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not a POSIX platform): nothing buffered we know of
        pass


def _enter() -> None:
    global _depth, _saved
    with _LOCK:
        _depth += 1
        if _depth > 1:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            copy = os.dup(1)
            os.dup2(2, 1)
        except OSError:  # no descriptor 1 (a daemon with stdout closed): Python's stream is all there is
            copy = None
        _saved = (copy, sys.stdout)
        sys.stdout = sys.stderr


def _leave() -> None:
    global _depth, _saved
    with _LOCK:
        _depth -= 1
        if _depth:
            return
        copy, stream = _saved
        _saved = ()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        sys.stdout = stream
        if copy is not None:
            _flush_c_stdio()
            os.dup2(copy, 1)
            os.close(copy)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Inside this block, whatever is written to stdout goes to stderr (re-entrant, thread-safe)."""
    _enter()
    try:
        yield
    finally:
        _leave()
