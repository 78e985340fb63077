"""The server's Predictor: opened with the options its backend wants in a server (:mod:`sdk.sharing`)."""

from __future__ import annotations


def open_predictor(model, backend: str = "auto", device: str = "auto", pipeline=None, memory_budget=None):
    """``Predictor(model, backend, device, pipeline, memory_budget)``, with the options that the first
    backend to try asks for in a server (``Backend.server_options``): :func:`sdk.sharing.open_predictor`,
    one call at a time (the server's batcher decides what goes to the engine together).
    ``memory_budget``: ``sdk serve --memory-budget`` (None: $SDK_MEMORY_BUDGET, else the default share)."""
    from ..sharing import open_predictor as open_shared

    budget = {} if memory_budget is None else {"memory_budget": memory_budget}  # None: the Predictor's default
    return open_shared(model, backend, device, pipeline=pipeline, **budget)
