"""Serve one model over HTTP: an image endpoint, the Open Inference Protocol (KServe v2), batching
across requests, limits, metrics and a page to try it.

``import sdk.serve`` stays light (the CLI imports it to add ``sdk serve``); the web stack
(starlette, uvicorn, prometheus-client) is imported when an app is created.

>>> from sdk import Predictor
>>> from sdk.serve import create_app
>>> app = create_app(Predictor("srcnn3"), max_batch=8)   # an ASGI app: mount it, or run it with uvicorn
"""

from __future__ import annotations

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(predictor, settings: ServeSettings | None = None, **overrides):
    """The ASGI app serving ``predictor``; keyword arguments override fields of ``ServeSettings``."""
    from .app import create_app as _create_app

    return _create_app(predictor, settings, **overrides)
