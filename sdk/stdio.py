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

# Descriptor 1 is the process's: two threads redirecting at once would restore each other's copy.
_LOCK = threading.RLock()
_depth = 0


def _flush_c_stdio() -> None:
    """Native code's buffered stdout must leave before descriptor 1 changes back, or it lands on stdout."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not a POSIX platform): nothing buffered we know of
        pass


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Inside this block, whatever is written to stdout goes to stderr (re-entrant, thread-safe)."""
    global _depth
    with _LOCK:
        if _depth:  # an outer block already redirects
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            saved = os.dup(1)
        except OSError:  # no descriptor 1 (a daemon with stdout closed): Python's stream is all there is
            saved = None
        _depth = 1
        try:
            if saved is not None:
                os.dup2(2, 1)
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            _depth = 0
            if saved is not None:
                _flush_c_stdio()
                os.dup2(saved, 1)
                os.close(saved)
