"""Serve one model over HTTP: an image endpoint, the Open Inference Protocol (KServe v2), batching
across requests, limits, metrics and a page to try it.

``import sdk.serve`` stays light (the CLI imports it to add ``sdk serve``); the web stack
(starlette, uvicorn, prometheus-client) is imported when an app is created.

>>> from sdk import Predictor
>>> from sdk.serve import create_app
>>> app = create_app(Predictor("srcnn3"), max_batch=8)   # an ASGI app: mount it, or run it with uvicorn
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServeSettings

if TYPE_CHECKING:
    from ..predictor import Predictor
    from .gate import Gate

__all__ = ["ServeSettings", "create_app"]


def create_app(predictor: Predictor, settings: ServeSettings | None = None, **overrides: Any) -> Gate:
    """The ASGI app that serves ``predictor`` over HTTP: mount it in your own app, or run it with uvicorn.

    Parameters:
        predictor: the open :class:`sdk.Predictor` to serve. The app uses it from its batching thread
            and its worker threads and closes nothing: close the Predictor after the app has stopped.
        settings: a :class:`ServeSettings` (None: the defaults).
        overrides: fields of ``settings`` to change, e.g. ``max_batch=8, tile=128`` (an unknown name
            or a bad value raises :class:`sdk.InputError`).

    Routes: ``POST /v1/models/{name}/upscale`` (an encoded image in, an encoded image out), the Open
    Inference Protocol under ``/v2`` (health, metadata, ``infer``), ``/metrics`` (Prometheus) and a
    page to try the model at ``/``. Needs the ``serve`` extra (starlette, uvicorn, prometheus-client).
    """
    from .app import create_app as _create_app

    return _create_app(predictor, settings, **overrides)
