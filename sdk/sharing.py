"""A Predictor opened to share its device with other work: a server's request handling, a video job's
decoding and encoding. The one place for the rule both follow.

The first backend to try says how it wants to be opened there (``Backend.server_options``: ONNX
Runtime on the CPU stops spin-waiting between calls) and, when asked for ``calls`` > 1, how to open its
engine so that that many calls run at once, each on its share of the device
(``Backend.concurrent_options``; a backend that says nothing runs one call at a time). Options the
backend would not accept, or that the caller passes itself, are left out; a hook that fails costs the
backend its settings, not the job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sharing:
    """What the first backend to try asks for: its options, and the engine calls they let run at once."""

    backend: str | None = None  # the backend that asked (None: the choice failed; the Predictor says why)
    options: Mapping[str, Any] = field(default_factory=dict)
    calls: int = 1


def shared_options(backend: str = "auto", device: str = "auto", calls: int = 1, given=()) -> Sharing:
    """The options for sharing the device, for ``calls`` engine calls at once where the backend can
    (else 1); keys in ``given`` (the caller's own options) are not overridden."""
    from .devices import parse_device
    from .errors import SDKError
    from .selection import candidates

    try:
        first, chosen = candidates(backend, parse_device(device))[0]
    except SDKError:
        return Sharing()
    options = _asked(first, "server_options", chosen) or {}
    if calls > 1:
        more = _asked(first, "concurrent_options", chosen, calls)
        if more is None or any(key in given for key in more):  # not supported, or the caller decides
            calls = 1
        else:
            options.update(more)
    return Sharing(first.name, {k: v for k, v in options.items() if k not in given}, max(1, calls))


def _asked(backend, hook: str, *args) -> dict[str, Any] | None:
    """``backend.hook(*args)`` reduced to the options it accepts; None when it returns None or fails."""
    try:
        found = getattr(backend, hook)(*args)
        return None if found is None else {k: v for k, v in dict(found).items() if backend.accepts(k)}
    except Exception as exc:  # a plugin's bug costs it these settings, not the job
        log.warning("backend %s: %s failed (%s: %s); opened without them", backend.name, hook, type(exc).__name__, exc)
        return None


def open_predictor(model, backend: str = "auto", device: str = "auto", *, calls: int = 1, **kwargs):
    """``Predictor(model, backend, device, **kwargs)`` with :func:`shared_options`. Its
    ``concurrent_calls`` says how many engine calls it was opened to run at once (1 unless ``calls`` > 1
    and the backend supports it). When the options narrow "auto" to backends of which none starts, it
    is opened again without them, so "auto" chooses among all."""
    from .errors import BackendUnavailableError
    from .predictor import Predictor

    sharing = shared_options(backend, device, calls, given=kwargs)
    if sharing.options:
        try:
            predictor = Predictor(model, backend=backend, device=device, **kwargs, **sharing.options)
        except BackendUnavailableError:
            if backend != "auto":
                raise
        else:
            if sharing.calls > 1 and predictor.backend == sharing.backend:
                predictor.concurrent_calls = sharing.calls
            return predictor
    return Predictor(model, backend=backend, device=device, **kwargs)
