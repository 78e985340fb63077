"""One engine session per runtime factor, behind the one Session the Predictor holds.

A runtime-scale model (srcnn3) takes its factor as an input, so its Resize can only be rewritten
once the factor is known. :class:`FactorSession` looks at the factor of each call and runs a
session made on the model rewritten for that factor, creating it the first time (a small LRU
bounds how many stay loaded). Factors the pass leaves alone run on one session of the original
model, which is also created up front so that a backend that cannot run the model at all says so
when the Predictor is made, not on the first call.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..backend import Session
from ..errors import InputError, SDKError

if TYPE_CHECKING:
    from ..cancel import CancelToken

log = logging.getLogger(__name__)

MAX_SESSIONS = 4  # factors kept loaded at once; a fifth evicts the least recently used

# The values of the shape inputs of one call, e.g. (("factor", (1.0, 1.0, 3.0, 3.0)),)
FactorKey = tuple[tuple[str, tuple[float, ...]], ...]


def factor_key(feeds: Mapping[str, np.ndarray], names: list[str]) -> FactorKey:
    key = []
    for name in names:
        # Python floats straight from the few values: numpy's ufuncs on a 4-element array cost more
        # than the values themselves (this runs on every call).
        values = tuple(float(v) for v in np.asarray(feeds[name]).ravel().tolist())
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"input {name!r} holds {list(values)}: every value must be a finite number")
        key.append((name, values))
    return tuple(key)


class FactorSession(Session):
    """A Session whose calls go to a per-factor session (``create(key)``) or the generic one.

    ``create(key)`` returns a Session on the model rewritten for ``key`` (its inputs lack the
    factor), or None when the pass changed nothing for that factor.
    """

    def __init__(
        self,
        generic: Session,
        create: Callable[[FactorKey], Session | None],
        names: list[str],
        max_sessions: int = MAX_SESSIONS,
    ):
        self._generic = generic
        self._create = create
        self._names = list(names)
        self._max = max(1, int(max_sessions))
        self._sessions: OrderedDict[FactorKey, Session | None] = OrderedDict()
        # The raw bytes of a call's shape inputs -> their key: a call then skips the conversion and
        # checks (most calls repeat one of a few factors). Bounded like the sessions, more loosely.
        self._keys: dict[tuple | None, FactorKey] = {}
        # (raw bytes, session) of the latest call, set and cleared under the lock: a call that repeats
        # it skips the lock and the LRU (whose order it would not change).
        self._recent: tuple[tuple, Session] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.inputs = tuple(generic.inputs)
        self.outputs = tuple(generic.outputs)

    def session_for(self, key: FactorKey, raw: tuple | None = None) -> Session:
        with self._lock:
            if self._closed:
                raise SDKError("this session is closed; create a new Predictor")
            if key in self._sessions:
                self._sessions.move_to_end(key)
                found = self._sessions[key]
            else:
                found = self._create(key)
                self._sessions[key] = found
                while len(self._sessions) > self._max:
                    _, evicted = self._sessions.popitem(last=False)
                    if evicted is not None:
                        self._recent = None
                        evicted.close()
            session = found if found is not None else self._generic
            if raw is not None:
                self._recent = (raw, session)
            return session

    def route(self, feeds: Mapping[str, np.ndarray]) -> tuple[Session, Mapping[str, np.ndarray]]:
        """The engine session these feeds go to, and the feeds it gets (without the baked factor)."""
        try:
            raw = tuple(
                [(value.dtype.char, value.shape, value.tobytes()) for value in map(feeds.__getitem__, self._names)]
            )
        except AttributeError:  # not numpy arrays: the slow path converts (or refuses) them
            raw = None
        recent = self._recent
        if recent is not None and recent[0] == raw:
            session = recent[1]
        else:
            key = self._keys.get(raw)
            if key is None:
                key = factor_key(feeds, self._names)
                if raw is not None:
                    if len(self._keys) >= 16 * self._max:
                        self._keys.clear()
                    self._keys[raw] = key
            session = self.session_for(key, raw)
        if session is self._generic:
            return session, feeds
        return session, {name: value for name, value in feeds.items() if name not in self._names}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session, feeds = self.route(feeds)
        return session.run(feeds)

    def run_cancellable(self, feeds: Mapping[str, np.ndarray], cancel: CancelToken) -> dict[str, np.ndarray]:
        session, feeds = self.route(feeds)
        return session.run_cancellable(feeds, cancel)  # the engine's own way to stop part-way

    @property
    def loaded_factors(self) -> list[FactorKey]:
        """The factors that have a session of their own now, least recently used first."""
        with self._lock:
            return [key for key, session in self._sessions.items() if session is not None]

    def __getattr__(self, name: str):
        # Engine-specific inspection (ORT's .providers, OpenVINO's .ov_property) reaches the engine.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._generic, name)

    def release_memory(self) -> None:
        with self._lock:
            sessions = [s for s in self._sessions.values() if s is not None]
        for session in [*sessions, self._generic]:
            session.release_memory()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._recent = None
            for session in self._sessions.values():
                if session is not None:
                    session.close()
            self._sessions.clear()
            self._generic.close()
