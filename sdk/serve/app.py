"""The ASGI app: one model, its routes, and the parts a request goes through.

gate.Gate            token, the fast inference routes, metrics and the access log
admission.Admission  queue places, body size, deadlines
v1.UpscaleRoute      /v1 images in, images out
v2.InferRoute        /v2 the Open Inference Protocol's inference
upscaling.ImagePath  decode, windows through the batcher, encode (both protocols)
metadata.Metadata    metadata, health, model list, metrics, page
batcher.Batcher      the thread that batches windows across requests into engine calls
errors               failures -> answers
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from .admission import Admission
from .batcher import Batcher
from .errors import HTTPError
from .gate import Gate
from .limits import Limits
from .metadata import Metadata
from .metrics import Metrics
from .release import Releaser
from .runner import TileRunner
from .settings import ServeSettings
from .upscaling import ImagePath
from .v1 import UpscaleRoute
from .v2 import InferRoute

access_log = logging.getLogger("sdk.serve.access")

# The routes whose latency sets Retry-After.
_TIMED_ROUTES = frozenset({"/v1/models/{name}/upscale", "/v2/models/{name}/infer"})


def create_app(predictor, settings: ServeSettings | None = None, **overrides) -> Gate:
    settings = settings or ServeSettings()
    if overrides:
        settings = settings.replace(**overrides)
    server = ModelServer(predictor, settings)
    meta = server.metadata
    upscale = Route("/v1/models/{name}/upscale", server.v1.endpoint, methods=["POST"])
    infer = Route("/v2/models/{name}/infer", server.v2.endpoint, methods=["POST"])
    routes = [
        Route("/", meta.page, methods=["GET"]),
        Route("/metrics", meta.metrics, methods=["GET"]),
        Route("/v1/models", meta.list_models, methods=["GET"]),
        upscale,
        Route("/v2", meta.server_metadata, methods=["GET"]),
        Route("/v2/health/live", meta.live, methods=["GET"]),
        Route("/v2/health/ready", meta.ready, methods=["GET"]),
        Route("/v2/models/{name}", meta.model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", meta.model_ready, methods=["GET"]),
        infer,
    ]
    app = Starlette(
        routes=routes, lifespan=server.lifespan, exception_handlers={404: meta.not_found, 405: meta.not_allowed}
    )
    app.state.server = server
    return Gate(app, server, {("v1", "upscale"): upscale, ("v2", "infer"): infer})


class ModelServer:
    """One model, one batcher thread, a pool of worker threads, and the routes' handlers."""

    def __init__(self, predictor, settings: ServeSettings):
        self.predictor = predictor
        self.settings = settings
        self.name = predictor.model.name
        self.metrics = Metrics()
        self.runner = TileRunner(predictor)
        self.batcher = Batcher(
            self.runner.run,
            settings.max_batch,
            settings.max_delay_ms / 1000.0,
            self.metrics.observe_engine,
            run_feeds=predictor.run,
        )
        # Each admitted image request holds a worker while its tiles wait on the batcher, so there is
        # one per place in the queue, plus a few for the raw-tensor requests' encoding.
        self.workers = ThreadPoolExecutor(settings.max_queue + settings.workers, thread_name_prefix="sdk-serve-worker")
        self.admission = Admission(settings, self.metrics)
        self.limits = Limits(predictor, settings)
        self.releaser = Releaser(self.batcher, predictor.session)
        self.image_path = ImagePath(
            predictor, settings, self.limits, self.batcher, self.runner, self.in_worker, self.releaser
        )
        self.v1 = UpscaleRoute(self)
        self.v2 = InferRoute(self)
        self.metadata = Metadata(self)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        yield
        # uvicorn calls this after in-flight requests are done (or the grace period is over).
        self.close()

    def close(self) -> None:
        self.releaser.close()
        self.batcher.close(timeout=30)
        self.workers.shutdown(wait=False, cancel_futures=True)

    async def in_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.workers, fn, *args)

    def check_model(self, request: Request) -> None:
        name = request.path_params["name"]
        if name != self.name:
            raise HTTPError(404, f"model {name!r} is not served here; this server serves {self.name!r}")

    def finished(self, scope, status: int, sent: int, seconds: float) -> None:
        """A request is answered: its metrics and its access-log line."""
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe_request(route, scope["method"], status, seconds)
        if status < 400 and route in _TIMED_ROUTES:
            self.admission.observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("", 0)
            access_log.info(
                json.dumps(
                    {
                        "ts": round(time.time(), 3),
                        "id": scope.get("sdk.request_id"),
                        "client": client[0],
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "ms": round(seconds * 1000, 2),
                        "bytes_out": sent,
                        "error": scope.get("sdk.error"),
                    },
                    separators=(",", ":"),
                )
            )
