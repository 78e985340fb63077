"""``sdk serve MODEL --ray``: the same app as a Ray Serve deployment, one engine per replica.

Two deployments. Each model replica builds its own Predictor (its own engine, its own batching
thread) and runs the very app ``create_app`` returns, so the endpoints, limits, token and page are
the same as on one machine. In front of them one light deployment takes the HTTP requests from Ray
Serve's proxy and hands each to a model replica through a deployment handle. It is there for one
reason: Ray Serve retries a request whose replica was dead before it got there, but a request
running on a replica that dies fails with ActorDiedError, which the proxy answers with a plain-text
500. The front sends such a request again (image requests are pure functions of their input, so a
second run is safe) to a replica that is alive, and only when that fails too answers a 503 in the
protocol's form with Retry-After. Ray Serve restarts the replica that died.

A model replica asks Ray for ``num_gpus`` (1 on a cluster with GPUs, unless told otherwise), so
replicas spread over the GPUs. Nothing here imports Ray at module level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import SDKError

APP_NAME = "sdk"
log = logging.getLogger("sdk.serve.ray")


# A request whose replica died is sent again this many times, a little later each time (Ray Serve
# takes the dead replica out of its routing as soon as the first failure comes back).
ATTEMPTS = 3
RETRY_PAUSE_S = 0.2
# How long a request may wait in Ray Serve's queue for a replica, beyond the app's own --timeout.
QUEUE_GRACE_S = 30.0


def build(
    model,
    *,
    backend: str = "auto",
    device: str = "auto",
    pipeline: Mapping | None = None,
    settings=None,
    replicas: int = 1,
    autoscaling: Mapping | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    memory_budget=None,
):
    """The bound Ray Serve application (pass it to ``serve.run``). ``autoscaling`` is Ray Serve's
    ``autoscaling_config`` as it is (min_replicas, max_replicas, target_ongoing_requests ...).
    ``memory_budget``: each replica's Predictor's (``sdk serve --memory-budget``)."""
    from ray import serve

    from ..scale import ship_model
    from .settings import ServeSettings

    settings = settings or ServeSettings()
    if autoscaling is None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1):
        raise SDKError(f"--replicas {replicas!r} must be a whole number >= 1")
    shipped = ship_model(model)

    actor_options: dict[str, Any] = {"num_gpus": float(num_gpus or 0)}
    if num_cpus is not None:
        actor_options["num_cpus"] = float(num_cpus)
    options: dict[str, Any] = {
        "name": MODEL_DEPLOYMENT,
        "ray_actor_options": actor_options,
        # Admission past this is the app's own 503; Ray's queue must not hold more.
        "max_ongoing_requests": settings.max_queue,
    }
    if autoscaling is not None:
        options["autoscaling_config"] = dict(autoscaling)
        most = int(autoscaling.get("max_replicas", 1) or 1)
    else:
        options["num_replicas"] = replicas
        most = replicas
    model_replicas = serve.deployment(ModelReplica, **options)
    # The front only moves bytes: no CPU of its own to reserve, and room for every replica's queue.
    front = serve.deployment(
        Front,
        name=FRONT_DEPLOYMENT,
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=settings.max_queue * max(1, most),
    )
    return front.bind(
        model_replicas.bind(shipped, backend, device, dict(pipeline) if pipeline else None, settings, memory_budget),
        settings,
    )


MODEL_DEPLOYMENT = "sdk-serve"
FRONT_DEPLOYMENT = "sdk-front"


class ModelReplica:
    """One engine: the app of ``create_app``, called in-process with each forwarded request."""

    def __init__(self, shipped, backend, device, pipeline, settings, memory_budget=None):
        from ..scale import open_shipped
        from .app import create_app
        from .predictor import open_predictor

        self.predictor = open_predictor(open_shipped(shipped), backend, device, pipeline, memory_budget)
        self.app = create_app(self.predictor, settings)

    async def forward(self, call: dict) -> tuple[int, list, bytes]:
        return await call_app(self.app, call)

    def __del__(self):  # Ray Serve's graceful shutdown of a replica: let the engine finish its queue
        server = getattr(getattr(self, "app", None), "server", None)
        if server is not None:
            server.close()


class Front:
    """Ray Serve's proxy -> here -> a model replica; a request whose replica died goes again.

    The front holds the limits that apply before a replica is involved, with the very code ``sdk
    serve`` runs (sdk.serve.admission): the body's size (413 from Content-Length, before reading), its
    deadline (408) and the bytes of bodies being read at once (503). Everything else (token, scale,
    pixels, images, JSON size and nesting, timeout) is the replica's app's, the same as on one
    machine. Each request gets its id here and the replica's app answers and logs under it, so every
    answer, the front's own too, is ``{"error": ...}`` JSON with an ``x-request-id`` that names its
    log lines, and no internals."""

    def __init__(self, model_handle, settings):
        from .admission import Admission
        from .metrics import Metrics

        self.model = model_handle
        self.settings = settings
        self.admission = Admission(settings, Metrics())

    async def __call__(self, request):
        from .errors import REQUEST_ID, answered, next_request_id

        rid = request.scope["sdk.request_id"] = next_request_id()
        response = await answered(request, self._forward)
        if REQUEST_ID not in response.headers:  # the front's own answer (a replica's carries it)
            response.headers[REQUEST_ID] = rid
        return response

    async def _forward(self, request):
        import asyncio

        from ray.exceptions import ActorDiedError, ActorUnavailableError
        from ray.serve.exceptions import ReplicaUnavailableError
        from starlette.responses import Response

        from .errors import HTTPError

        body = await self.admission.read_body(request)
        client = request.client
        call = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": list(request.headers.raw),
            "body": body,
            "client": (client.host, client.port) if client else None,
            "id": request.scope["sdk.request_id"],
        }
        lost = None
        # The app bounds a request once a replica runs it; this bounds the wait for a replica too
        # (while Ray Serve replaces the only one, say).
        limit = self.settings.timeout_s + QUEUE_GRACE_S if self.settings.timeout_s else None
        for attempt in range(ATTEMPTS):
            response = self.model.forward.remote(call)
            try:
                status, headers, data = await asyncio.wait_for(_awaited(response), limit)
            except asyncio.TimeoutError:
                response.cancel()
                raise HTTPError(
                    504,
                    f"no replica answered within {limit:g} s (--timeout plus {QUEUE_GRACE_S:g} s in Ray Serve's "
                    "queue); retry later",
                ) from None
            except (ActorDiedError, ActorUnavailableError, ReplicaUnavailableError) as exc:
                lost = exc
                if attempt + 1 < ATTEMPTS:
                    log.warning(
                        "request %s %s %s: its replica was lost (%s); sent again (attempt %d of %d)",
                        call["id"],
                        request.method,
                        request.url.path,
                        type(exc).__name__,
                        attempt + 2,
                        ATTEMPTS,
                    )
                    await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
                continue
            return Response(data, status_code=status, headers=_header_dict(headers))
        retry = max(1, round(RETRY_PAUSE_S * ATTEMPTS))
        log.warning("request %s: its replica was lost %d times (%s)", call["id"], ATTEMPTS, type(lost).__name__)
        raise HTTPError(
            503,
            f"the replica running this request was lost, {ATTEMPTS} times; retry in {retry} s, when Ray Serve "
            "has replaced it",
            {"retry-after": str(retry)},
        )


async def _awaited(response):
    return await response


def _header_dict(headers: list) -> dict:
    """ASGI response headers as Starlette's Response takes them (content-length is recomputed)."""
    out = {}
    for key, value in headers:
        name = key.decode("latin-1")
        if name.lower() != "content-length":
            out[name] = value.decode("latin-1")
    return out


async def call_app(app, call: dict) -> tuple[int, list, bytes]:
    """Run one HTTP request through an ASGI app in this process: (status, headers, body)."""
    import asyncio

    path = call["path"]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": call["method"],
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8"),
        "root_path": "",
        "query_string": call["query"].encode("latin-1"),
        "headers": call["headers"],
        "client": call.get("client"),
        "server": None,
        "state": {},
    }
    if call.get("id"):  # the front's id: the app answers and logs under it
        scope["sdk.request_id"] = call["id"]
    done = asyncio.Event()
    sent_body = False
    status, headers, chunks = 500, [], []

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": call["body"], "more_body": False}
        await done.wait()  # the app's disconnect watcher waits here until the answer is out
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return status, headers, b"".join(chunks)
