"""The server's Predictor: opened with the options its backend wants in a server."""

from __future__ import annotations

import logging

from ..errors import SDKError

log = logging.getLogger("sdk.serve")


def open_predictor(model, backend: str = "auto", device: str = "auto", pipeline=None):
    """``Predictor(model, backend, device, pipeline)``, with the options that the first backend to try
    asks for in a server (``Backend.server_options``).

    With ``backend="auto"`` those options narrow the choice to backends that accept them; when none of
    those can start, the Predictor is opened again without them, so "auto" chooses among all."""
    from ..devices import parse_device
    from ..errors import BackendUnavailableError
    from ..predictor import Predictor
    from ..selection import candidates

    options = {}
    try:
        first, chosen = candidates(backend, parse_device(device))[0]
    except SDKError:
        pass  # the Predictor below says what is wrong
    else:
        try:
            options = {k: v for k, v in dict(first.server_options(chosen)).items() if first.accepts(k)}
        except Exception as exc:  # a plugin's bug costs it its server settings, not the server
            log.warning(
                "backend %s: server_options failed (%s: %s); opened without them", first.name, type(exc).__name__, exc
            )
    if options:
        try:
            return Predictor(model, backend=backend, device=device, pipeline=pipeline, **options)
        except BackendUnavailableError:
            if backend != "auto":
                raise
    return Predictor(model, backend=backend, device=device, pipeline=pipeline)
