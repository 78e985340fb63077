"""The ASGI app: routes, admission, limits, batching through the engine thread, errors at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .. import images, memory, tiling
from ..errors import InputError, SDKError
from ..footprint import footprint
from . import coding, protocol
from .engine import Engine
from .errors import HTTPError, bad_request, too_large, unprocessable
from .metrics import Metrics
from .runner import TileRunner
from .settings import ServeSettings

log = logging.getLogger("sdk.serve")
access_log = logging.getLogger("sdk.serve.access")

SERVER_NAME = "deploy-sdk"
# Reachable without the token: orchestrators' probes, and the page itself (it holds no data; its
# calls carry the token the user types in).
PUBLIC_PATHS = {"/", "/v2/health/live", "/v2/health/ready"}
# On CPU, windows are batched across requests only up to this many input pixels per engine call:
# small windows gain from sharing a call (less per-call overhead), while a 256x256 window already
# keeps the cores busy and a batch of them ran slower than one at a time (benchmarks/results/serve.md).
CPU_BATCH_PIXELS = 128 * 128 * 4
# Small work runs on the event loop rather than in a worker thread: a hop to a thread and back costs
# two wake-ups and a GIL hand-over each way, and on the 2-core build machine (busy: load average
# about 4) skipping them for espcn 64x64 took the server's CPU from about 9.0 to 7.3 ms a request at
# 16 clients and its p50 at one client from +2.6 to +1.8 ms over in-process. Images whose result has
# at most LOOP_PIXELS pixels (about a millisecond of decoding, pre/post-processing and encoding; a
# slow encoder still goes to a worker) and Open Inference Protocol answers of at most LOOP_BYTES
# binary bytes (a copy) stay on the loop.
LOOP_PIXELS = 256 * 256
LOOP_BYTES = 4 * 2**20
# The routes whose latency sets Retry-After.
_TIMED_ROUTES = frozenset({"/v1/models/{name}/upscale", "/v2/models/{name}/infer"})


def create_app(predictor, settings: ServeSettings | None = None, **overrides) -> Starlette:
    settings = settings or ServeSettings()
    if overrides:
        settings = settings.replace(**overrides)
    server = ModelServer(predictor, settings)
    upscale = Route("/v1/models/{name}/upscale", server.upscale_endpoint, methods=["POST"])
    infer = Route("/v2/models/{name}/infer", server.infer_endpoint, methods=["POST"])
    routes = [
        Route("/", server.page, methods=["GET"]),
        Route("/metrics", server.metrics_endpoint, methods=["GET"]),
        Route("/v1/models", server.list_models, methods=["GET"]),
        upscale,
        Route("/v2", server.server_metadata, methods=["GET"]),
        Route("/v2/health/live", server.live, methods=["GET"]),
        Route("/v2/health/ready", server.ready, methods=["GET"]),
        Route("/v2/models/{name}", server.model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", server.model_ready, methods=["GET"]),
        infer,
    ]
    app = Starlette(
        routes=routes, lifespan=server.lifespan, exception_handlers={404: server.not_found, 405: server.not_allowed}
    )
    app.state.server = server
    return _Gate(app, server, {("v1", "upscale"): upscale, ("v2", "infer"): infer})


class _Gate:
    """Outermost layer: token check, metrics and one access-log line per request (plain ASGI, so it
    adds microseconds, not a middleware stack).

    The two inference routes go straight to their endpoint. Their endpoints answer every error
    themselves (ModelServer._handle), so Starlette's error middleware, exception middleware and
    router have nothing to do for them but cost: a tenth of a millisecond a request on the build
    machine, a few percent of a small image's whole time. Every other path, and anything these two
    would not match exactly as the router does, goes through the Starlette app."""

    def __init__(self, app: Starlette, server: ModelServer, hot: dict[tuple[str, str], Route]):
        self.app = app
        self.server = server
        self.state = app.state
        self._hot = hot

    def __getattr__(self, name):  # routes, url_path_for ... as on the Starlette app
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        reply = _Reply(send)
        token = self.server.settings.token
        try:
            if token is not None and scope["path"] not in PUBLIC_PATHS and not _authorized(scope, token):
                response = _error(
                    401, "missing or wrong token: send 'Authorization: Bearer <token>'", {"www-authenticate": "Bearer"}
                )
                await response(scope, receive, reply.send)
            elif (route := self._hot_route(scope)) is not None:
                response = await route.endpoint(Request(scope, receive, reply.send))
                await response(scope, receive, reply.send)
            else:
                await self.app(scope, receive, reply.send)
        finally:
            self.server.finished(scope, reply.status, reply.sent, time.perf_counter() - started)

    def _hot_route(self, scope) -> Route | None:
        """The route of POST /v1/models/{name}/upscale or /v2/models/{name}/infer, with the scope
        filled in as the router fills it; None for anything else."""
        if scope["method"] != "POST" or scope.get("root_path"):  # mounted apps: the router strips the prefix
            return None
        parts = scope["path"].split("/")
        if len(parts) != 5 or parts[0] or parts[2] != "models" or not parts[3]:
            return None
        route = self._hot.get((parts[1], parts[4]))
        if route is not None:
            scope["app"] = self.app
            scope["route"] = route
            scope["endpoint"] = route.endpoint
            scope["path_params"] = {"name": parts[3]}
        return route


class _Reply:
    """The ASGI send of a request, noting the status and the bytes sent for metrics and the log."""

    __slots__ = ("_send", "sent", "status")

    def __init__(self, send):
        self._send = send
        self.status, self.sent = 500, 0

    async def send(self, message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.sent += len(message.get("body", b""))
        elif kind == "http.response.start":
            self.status = message["status"]
        await self._send(message)


def _authorized(scope, token: str) -> bool:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return hmac.compare_digest(given.strip().encode(), token.encode())
    return False


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ModelServer:
    """One model, one engine thread, a pool of worker threads, and the request handlers."""

    def __init__(self, predictor, settings: ServeSettings):
        self.predictor = predictor
        self.settings = settings
        self.name = predictor.model.name
        self.runner = TileRunner(predictor)
        self.metrics = Metrics()
        self.engine = Engine(
            self.runner.run,
            settings.max_batch,
            settings.max_delay_ms / 1000.0,
            self.metrics.observe_engine,
            run_feeds=predictor.run,
        )
        self._raw_batched = _raw_batch_axis(predictor) if settings.max_batch > 1 else frozenset()
        # Each admitted image request holds a worker while its tiles wait on the engine, so there is
        # one per place in the queue, plus a few for the raw-tensor requests' encoding.
        self.workers = ThreadPoolExecutor(settings.max_queue + settings.workers, thread_name_prefix="sdk-serve-worker")
        self.margin = tiling.margin_for(tiling.receptive_radius(predictor.model.proto, predictor.spec.image_input, 4))
        self._plans: dict[int, tiling.Plan] = {}
        self.admitted = 0
        self._latency = 1.0  # a running mean of request seconds, for Retry-After
        self._page = None

    # -- lifetime --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        yield
        # uvicorn calls this after in-flight requests are done (or the grace period is over).
        self.close()

    def close(self) -> None:
        self.engine.close(timeout=30)
        self.workers.shutdown(wait=False, cancel_futures=True)

    def finished(self, scope, status: int, sent: int, seconds: float) -> None:
        """A request is answered: its metrics and its access-log line."""
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe_request(route, scope["method"], status, seconds)
        if status < 400 and route in _TIMED_ROUTES:
            self._latency = 0.9 * self._latency + 0.1 * seconds
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("", 0)
            access_log.info(
                json.dumps(
                    {
                        "ts": round(time.time(), 3),
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

    # -- the work shared by both inference endpoints ------------------------------------------------

    @contextlib.asynccontextmanager
    async def admission(self):
        """A place in the bounded queue, or a 503 telling the client when to come back."""
        if self.admitted >= self.settings.max_queue:
            self.metrics.rejected.inc()
            retry = max(1, math.ceil(self._latency * self.admitted / max(1, self.settings.max_batch)))
            raise HTTPError(
                503,
                f"the server is busy ({self.admitted} requests in flight, --max-queue "
                f"{self.settings.max_queue}); retry in {retry} s",
                {"retry-after": str(retry)},
            )
        self.admitted += 1
        self.metrics.in_flight.set(self.admitted)
        try:
            yield
        finally:
            self.admitted -= 1
            self.metrics.in_flight.set(self.admitted)

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(f"the body is {int(declared)} bytes; this server takes at most {limit} (--max-body)")
        body = await read_capped(request, limit)
        if body is None:
            raise too_large(f"the body is over {limit} bytes (--max-body)")
        return body

    async def guarded(self, request: Request, work):
        """Await ``work`` within the request timeout; a client that hangs up cancels it (its queued
        tiles are dropped before they reach the engine).

        ``work`` runs in the request's own task, which the timer or the hang-up cancels: a task of its
        own would cost two turns of the event loop (one to start, one to hand its result back), about
        a third of a millisecond per request on the build machine."""
        task = asyncio.current_task()
        stopped, over = [], []

        def stop(why: str) -> None:
            if not stopped and not over:  # once, and never after the work is over (a late callback)
                stopped.append(why)
                task.cancel()

        timeout = self.settings.timeout_s
        timer = asyncio.get_running_loop().call_later(timeout, stop, "timeout") if timeout else None
        watcher = asyncio.ensure_future(_disconnected(request))
        watcher.add_done_callback(lambda w: w.cancelled() or w.exception() is not None or stop("hang-up"))
        try:
            return await work
        except asyncio.CancelledError:
            if not stopped:
                raise  # cancelled from outside: the server is going down
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancellation is handled here
                task.uncancel()
        finally:
            over.append(True)
            if timer is not None:
                timer.cancel()
            watcher.cancel()
        if stopped[0] == "hang-up":
            raise HTTPError(499, "the client closed the connection")
        raise HTTPError(
            504,
            f"the request took longer than {timeout:g} s (--timeout); "
            "send a smaller image or retry when the server is less busy",
        )

    async def in_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.workers, fn, *args)

    def check_scale(self, text) -> int:
        try:
            if isinstance(text, str):
                text = _number(text)
            return self.predictor.pipeline.check_scale(text)
        except InputError as exc:
            raise unprocessable(str(exc)) from None

    async def upscale_bytes(self, data: bytes, scale: int, fmt_name: str | None) -> tuple[bytes, str, tuple, tuple]:
        """Encoded image -> encoded result: a small one on the event loop, any other in a worker
        thread; either way its tiles run on the engine with other requests'."""
        header = coding.open_header(data, self.settings.max_pixels)
        plan = self._plan(scale)
        if self._on_loop(header, scale, plan):
            return await self._upscale_on_loop(header, scale, fmt_name, plan)
        ticket = _Ticket(self.engine)
        try:
            return await self.in_worker(self._upscale_sync, header, scale, fmt_name, plan, ticket)
        except asyncio.CancelledError:
            ticket.cancel()  # its queued tiles are dropped before they reach the engine
            raise

    def _on_loop(self, header: coding.Header, scale: int, plan: tiling.Plan) -> bool:
        """Whether an image is too small for a thread of its own: it runs as one window (no tiling)
        and its result has at most LOOP_PIXELS pixels. Its engine call still runs on the engine
        thread, with other requests' windows; only the millisecond around it stays on the loop."""
        return (
            not plan.exact
            and header.height <= plan.window[0]
            and header.width <= plan.window[1]
            and header.height * header.width * scale * scale <= LOOP_PIXELS
        )

    async def _upscale_on_loop(self, header: coding.Header, scale: int, fmt_name: str | None, plan: tiling.Plan):
        decoded, fmt = self._decoded(header, scale, fmt_name)
        pixels = decoded.pixels[None]
        tensor, prepared = self.runner.prepare(pixels, scale)
        limit = self._window_limit(pixels, plan.batch)
        # Cancelling this await (timeout, hang-up) cancels the job: the engine drops it unrun.
        out = self.runner.finish(await asyncio.wrap_future(self.engine.submit(tensor, scale, limit)), prepared)[0]
        if coding.quick_to_encode(fmt, decoded):
            body, content_type = coding.encode(out, fmt, decoded)
        else:  # Pillow's PNG or WebP: milliseconds the loop should not stall for
            body, content_type = await self.in_worker(coding.encode, out, fmt, decoded)
        return body, content_type, (header.width, header.height), (out.shape[1], out.shape[0])

    def _decoded(self, header: coding.Header, scale: int, fmt_name: str | None) -> tuple[images.Decoded, str]:
        """The pixels, and the answer's format, once the answer is known to fit its format and memory."""
        fmt = coding.output_format(fmt_name, header.source_format)
        coding.check_size(fmt, header.height * scale, header.width * scale)
        self._check_memory(header.height, header.width, scale)
        return coding.load(header), fmt

    def _upscale_sync(
        self, header: coding.Header, scale: int, fmt_name: str | None, plan: tiling.Plan, ticket: _Ticket
    ):
        ticket.begin()  # decoding: this request will submit soon, so a forming batch may wait for it
        try:
            decoded, fmt = self._decoded(header, scale, fmt_name)
            out = tiling.upscale_tiled(
                decoded.pixels[None], scale, plan, lambda windows: self._run_windows(windows, scale, plan.batch, ticket)
            )[0]
        finally:
            ticket.end()
        body, content_type = coding.encode(out, fmt, decoded)
        return body, content_type, (header.width, header.height), (out.shape[1], out.shape[0])

    def _window_limit(self, windows: np.ndarray, limit: int) -> int:
        """Windows per engine call: the plan's, and on CPU no more than CPU_BATCH_PIXELS."""
        if self.predictor.device == "cpu":
            limit = min(limit, max(1, CPU_BATCH_PIXELS // (windows.shape[1] * windows.shape[2])))
        return limit

    def _run_windows(self, windows: np.ndarray, scale: int, limit: int, ticket: _Ticket) -> np.ndarray:
        """sdk.tiling's window runner: prepare here, run on the engine thread with other requests'
        windows of the same shape (or right here when the engine is idle and nobody else is coming),
        finish here."""
        if ticket.cancelled:
            raise asyncio.CancelledError()
        limit = self._window_limit(windows, limit)
        ticket.begin()
        try:
            tensor, prepared = self.runner.prepare(windows, scale)
            future = ticket.future = self.engine.submit(tensor, scale, limit, inline=True)
        finally:
            ticket.end()
        if ticket.cancelled:
            future.cancel()
        return self.runner.finish(future.result(), prepared)

    def _plan(self, scale: int) -> tiling.Plan:
        """Windows of one shape for every image (so that requests share engine calls); a static-size
        model's own size, padded at the edges as sdk.tiling pads it."""
        plan = self._plans.get(scale)
        if plan is None:
            margin = self.margin
            static = self.predictor.pipeline.static_size
            if static is not None:
                window = (int(static[0]), int(static[1]))
                if min(window) <= 2 * margin:
                    margin = max(0, (min(window) - 1) // 4)
            else:
                window = (self.settings.tile + 2 * margin,) * 2
            plan = self._plans[scale] = tiling.Plan(
                window, margin, self._batch_limit(window, scale), exact=static is not None
            )
        return plan

    def _batch_limit(self, window: tuple[int, int], scale: int) -> int:
        """Tiles per engine call: --max-batch, fewer when the model's activations would not fit the
        memory budget, 1 for a model without a dynamic batch axis."""
        if not self.predictor._dynamic_batch:
            return 1
        found = footprint(self.predictor.model, self.predictor.spec, scale)
        fits = found.pixels_within(memory.budget(None, self.predictor.device)) // (window[0] * window[1])
        return int(max(1, min(self.settings.max_batch, fits)))

    def _check_memory(self, height: int, width: int, scale: int) -> None:
        need = height * scale * width * scale * 3
        room = memory.available()
        if need > room:
            raise too_large(
                f"the {width * scale}x{height * scale} result would need {memory.gib(need)}, more than the "
                f"{memory.gib(room)} of memory available; send a smaller image or use a smaller scale"
            )

    # -- /v1: images in, images out -------------------------------------------------------------------

    async def upscale_endpoint(self, request: Request) -> Response:
        return await self._handle(request, self._upscale, v2=False)

    async def _upscale(self, request: Request) -> Response:
        self._check_model(request)
        scale = self.check_scale(request.query_params.get("scale"))
        fmt = request.query_params.get("format")
        if fmt is not None:
            coding.output_format(fmt, None)  # a bad format is refused before any work
        async with self.admission():
            started = time.perf_counter()
            body = await self.read_body(request)
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                body = await _form_image(request, body)
            data, content_type, (w, h), (ow, oh) = await self.guarded(request, self.upscale_bytes(body, scale, fmt))
        ms = (time.perf_counter() - started) * 1000
        return Response(
            data,
            media_type=content_type,
            headers={
                "x-sdk-model": self.name,
                "x-sdk-backend": self.predictor.backend,
                "x-sdk-device": self.predictor.device,
                "x-sdk-scale": str(scale),
                "x-sdk-input-size": f"{w}x{h}",
                "x-sdk-output-size": f"{ow}x{oh}",
                "x-sdk-time-ms": f"{ms:.1f}",
            },
        )

    # -- /v2: the Open Inference Protocol ------------------------------------------------------------

    async def infer_endpoint(self, request: Request) -> Response:
        return await self._handle(request, self._infer, v2=True)

    async def _infer(self, request: Request) -> Response:
        self._check_model(request)
        async with self.admission():
            body = await self.read_body(request)
            parsed = protocol.parse_request(body, request.headers.get(protocol.HEADER_LENGTH))
            outputs = await self.guarded(request, self._infer_outputs(parsed))
        if _only_bytes_to_copy(parsed, outputs):  # a copy of a few bytes: cheaper here than a thread hop
            data, headers = protocol.encode_response(self.name, parsed, outputs)
        else:
            data, headers = await self.in_worker(protocol.encode_response, self.name, parsed, outputs)
        return Response(data, headers=headers)

    async def _infer_outputs(self, parsed: protocol.InferRequest) -> list[protocol.InferOutput]:
        images = [i for i in parsed.inputs if i.datatype == "BYTES"]
        if images:
            return await self._infer_images(parsed, images)
        feeds = {i.name: i.data for i in parsed.inputs}
        try:
            from ..predictor import check_feeds

            check_feeds(feeds, self.predictor.inputs)
        except InputError as exc:
            raise bad_request(str(exc)) from None
        batched = self._raw_batched  # (check_feeds made sure each of these has its batch axis)
        if batched and len({len(feeds[n]) for n in batched}) == 1:
            # Cancelling the awaiting task (timeout, hang-up) cancels the job before it runs.
            results = await asyncio.wrap_future(
                self.engine.submit_feeds(feeds, batched, self._raw_limit(feeds, batched))
            )
        else:
            results = await asyncio.wrap_future(self.engine.call(lambda: self.predictor.run(feeds)))
        wanted = [o.get("name") for o in parsed.outputs] if parsed.outputs else list(results)
        unknown = [n for n in wanted if n not in results]
        if unknown:
            raise bad_request(f"unknown output(s) {unknown}; the model's outputs are {list(results)}")
        return [protocol.InferOutput(n, np.asarray(results[n])) for n in wanted]

    def _raw_limit(self, feeds: dict, batched: frozenset) -> int:
        """Requests' items per engine call: on CPU no more than the image windows' pixel budget (per
        3-channel item), as for image requests."""
        if self.predictor.device != "cpu":
            return 0
        per_item = max(math.prod(feeds[n].shape[1:]) for n in batched)
        return max(1, min(self.settings.max_batch, 3 * CPU_BATCH_PIXELS // max(1, per_item)))

    async def _infer_images(self, parsed, images) -> list[protocol.InferOutput]:
        if len(parsed.inputs) != 1:
            raise bad_request(
                "an image request has one BYTES input (the encoded images) and nothing else; "
                "put scale and format in the request's parameters"
            )
        scale = self.check_scale(parsed.parameters.get("scale"))
        fmt = parsed.parameters.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise unprocessable("parameters.format must be a string: png, jpeg or webp")
        if fmt is not None:
            coding.output_format(fmt, None)
        if parsed.outputs and [o.get("name") for o in parsed.outputs] != ["image"]:
            raise bad_request("an image request has one output, 'image' (the encoded results)")
        encoded = await asyncio.gather(*(self.upscale_bytes(e, scale, fmt) for e in images[0].data))
        return [protocol.InferOutput("image", [e[0] for e in encoded], shape=images[0].shape)]

    def _model_doc(self) -> dict:
        def tensors(infos):
            return [
                {
                    "name": t.name,
                    "datatype": protocol.datatype_of(t.dtype),
                    "shape": [d if isinstance(d, int) else -1 for d in t.shape],
                }
                for t in infos
            ]

        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnx",
            "inputs": tensors(self.predictor.inputs),
            "outputs": tensors(self.predictor.outputs),
            "parameters": {
                "backend": self.predictor.backend,
                "device": self.predictor.device,
                "scale": self.predictor.scale,
                "image_input": {"name": "image", "datatype": "BYTES"},
            },
        }

    async def server_metadata(self, request: Request) -> Response:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("deploy-sdk")
        except PackageNotFoundError:  # pragma: no cover - a source checkout without install
            ours = "unknown"
        return JSONResponse({"name": SERVER_NAME, "version": ours, "extensions": ["binary_tensor_data"]})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        return JSONResponse({"ready": True})

    async def model_metadata(self, request: Request) -> Response:
        return await self._handle(request, self._metadata, v2=True)

    async def _metadata(self, request: Request) -> Response:
        self._check_model(request)
        return JSONResponse(self._model_doc())

    async def model_ready(self, request: Request) -> Response:
        return await self._handle(request, self._model_ready, v2=True)

    async def _model_ready(self, request: Request) -> Response:
        self._check_model(request)
        return JSONResponse({"name": self.name, "ready": True})

    # -- the rest ---------------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        doc = self._model_doc()
        doc["runtime_scale"] = self.predictor.scale is None
        return JSONResponse({"models": [doc]})

    async def metrics_endpoint(self, request: Request) -> Response:
        self.metrics.queue_depth.set(self.engine.queued)
        body, content_type = self.metrics.render()
        return Response(body, headers={"content-type": content_type})

    async def page(self, request: Request) -> Response:
        if self._page is None:
            self._page = resources.files("sdk.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(self._page)

    async def not_found(self, request: Request, exc) -> Response:
        return _error(404, f"no such endpoint {request.url.path}; see /v2 and /v1/models/{self.name}/upscale")

    async def not_allowed(self, request: Request, exc) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")

    def _check_model(self, request: Request) -> None:
        name = request.path_params["name"]
        if name != self.name:
            raise HTTPError(404, f"model {name!r} is not served here; this server serves {self.name!r}")

    async def _handle(self, request: Request, handler, v2: bool) -> Response:
        """Every failure becomes {"error": message} with its status; nothing else leaves the server."""
        try:
            return await handler(request)
        except HTTPError as exc:
            request.scope["sdk.error"] = exc.message
            return _error(exc.status, exc.message, exc.headers)
        except InputError as exc:
            request.scope["sdk.error"] = str(exc)
            return _error(400, str(exc))
        except SDKError as exc:
            log.error("request failed: %s", exc)
            request.scope["sdk.error"] = str(exc)
            return _error(500, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request %s %s failed", request.method, request.url.path)
            request.scope["sdk.error"] = "internal error"
            return _error(500, "internal server error; the server log has the details")


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it passes ``limit`` bytes (the rest is never read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _only_bytes_to_copy(parsed: protocol.InferRequest, outputs: list[protocol.InferOutput]) -> bool:
    """Whether a response is only bytes to copy (binary tensors, at most LOOP_BYTES of them): JSON
    numbers and base64 take the worker pool."""
    total = 0
    for out in outputs:
        if not parsed.wants_binary(out.name):
            return False
        total += out.data.nbytes if isinstance(out.data, np.ndarray) else sum(len(e) for e in out.data)
    return total <= LOOP_BYTES


def _raw_batch_axis(predictor) -> frozenset:
    """The inputs that carry a batch axis, when raw requests can share engine calls: some input and
    every output have a dynamic first dimension (else each raw request runs alone)."""

    def dynamic(info):
        return len(info.shape) > 0 and not isinstance(info.shape[0], int)

    batched = frozenset(i.name for i in predictor.inputs if dynamic(i))
    if not batched or not all(dynamic(o) for o in predictor.outputs):
        return frozenset()
    return batched


def _number(text: str):
    """A query parameter as a number when it is one; otherwise as given, for check_scale to refuse."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class _Ticket:
    """One image request's link to the engine: whether it is about to submit, and how to call it off."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.cancelled = False
        self.future = None
        self._preparing = False
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            if not self._preparing and not self.cancelled:
                self._preparing = True
                self.engine.preparing(+1)

    def end(self) -> None:
        with self._lock:
            if self._preparing:
                self._preparing = False
                self.engine.preparing(-1)

    def cancel(self) -> None:
        self.cancelled = True
        future = self.future
        if future is not None:
            future.cancel()
        self.end()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _form_image(request: Request, body: bytes) -> bytes:
    """The image of a multipart form: the field 'image', else the only file."""

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = Request(request.scope, replay)
    try:
        form = await form_request.form(max_files=4, max_fields=16)
    except Exception as exc:  # python-multipart's errors are many; all mean a malformed form
        raise bad_request(f"the multipart form cannot be read ({exc}); send the image as the field 'image'") from None
    item = form.get("image")
    if item is None:
        files = [v for _, v in form.multi_items() if hasattr(v, "read")]
        if len(files) != 1:
            raise bad_request("the multipart form has no field 'image' (and not exactly one file)")
        item = files[0]
    if isinstance(item, str):
        return item.encode("latin-1")
    return await item.read()
