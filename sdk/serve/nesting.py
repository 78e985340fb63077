"""How deep a JSON text nests, read from its bytes before any parser recurses into it.

Python's json module recurses once per level of arrays and objects; a body of 100,000 brackets is
stopped only by the interpreter's recursion limit, a bound nobody chose and that differs between
Python versions. The depth is counted here instead, vectorised with numpy (brackets inside strings
do not count; a quote after an odd run of backslashes is part of its string), in milliseconds for
the largest JSON part a server takes, so every request's nesting is bounded by a setting.
"""

from __future__ import annotations

import numpy as np

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = (ord("["), ord("{")), (ord("]"), ord("}"))


def json_depth(text: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (0 for a bare value; ``[[1]]`` is 2).
    Exact for valid JSON; for invalid text some number, which the parser then refuses anyway."""
    if not (b"[" in text or b"{" in text):
        return 0
    raw = np.frombuffer(text, np.uint8)
    quotes = raw == _QUOTE
    backslashes = raw == _BACKSLASH
    if backslashes.any():
        edges = np.diff(backslashes.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        escaped = ends[((ends - starts) % 2 == 1) & (ends < len(raw))]  # the character after an odd run
        quotes[escaped] = False
    # 1 from a string's opening quote up to (not including) its closing one.
    in_string = np.bitwise_xor.accumulate(quotes.view(np.uint8))
    outside = in_string == 0
    opens = (raw == _OPEN[0]) | (raw == _OPEN[1])
    at = np.flatnonzero((opens | (raw == _CLOSE[0]) | (raw == _CLOSE[1])) & outside)
    steps = np.where(opens[at], np.int32(1), np.int32(-1))
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))
