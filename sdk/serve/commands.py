"""``sdk serve MODEL``: one process, one engine, the app on uvicorn (or on Ray Serve with --ray)."""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import threading

from ..errors import SDKError

TOKEN_ENV = "SDK_SERVE_TOKEN"


def add_commands(sub) -> None:
    from .settings import ServeSettings

    d = ServeSettings()
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP (image endpoint, Open Inference Protocol, a page)",
        description="Serve one model over HTTP: POST /v1/models/NAME/upscale, the KServe v2 "
        "protocol under /v2, Prometheus metrics at /metrics and a page at /.",
    )
    p.add_argument("model", metavar="MODEL", help="bundled model name or .onnx path (fixed for the server's life)")
    p.add_argument("--backend", default="auto", help="backend name or 'auto' (default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token or --no-auth)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help=f"tiles per engine call (default {d.max_batch})")
    p.add_argument(
        "--max-delay-ms",
        type=float,
        default=d.max_delay_ms,
        help=f"longest wait for a fuller batch while requests are arriving (default {d.max_delay_ms:g})",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help=f"requests admitted at once; more get 503 (default {d.max_queue})",
    )
    p.add_argument(
        "--max-pixels", type=int, default=d.max_pixels, help=f"largest input image in pixels (default {d.max_pixels})"
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=d.max_body_bytes / 2**20,
        help=f"largest request body in MiB (default {d.max_body_bytes / 2**20:g})",
    )
    p.add_argument(
        "--timeout", type=float, default=d.timeout_s, help=f"seconds per request before 504 (default {d.timeout_s:g})"
    )
    p.add_argument(
        "--tile",
        type=int,
        default=d.tile,
        help=f"tile side in input pixels (plus the model's margin) for batching across requests (default {d.tile})",
    )
    p.add_argument("--workers", type=int, default=d.workers, help=f"decode/encode threads (default {d.workers})")
    p.add_argument("--token", default=None, help=f"bearer token clients must send (or set {TOKEN_ENV})")
    p.add_argument("--no-auth", action="store_true", help="allow a non-loopback --host without a token")
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds to finish in-flight requests on SIGTERM (default 30)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    ray = p.add_argument_group("Ray Serve (one engine per replica, behind Ray Serve's proxy)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run as a Ray Serve deployment: no ADDRESS starts a local cluster, 'auto' joins this "
        "machine's, ray://HOST:10001 a remote one",
    )
    ray.add_argument("--replicas", type=int, default=1, help="replicas (engines) with --ray (default 1)")
    ray.add_argument(
        "--autoscaling",
        default=None,
        metavar="JSON",
        help='Ray Serve autoscaling_config, e.g. \'{"min_replicas": 1, "max_replicas": 4}\' (instead of --replicas)',
    )
    ray.add_argument(
        "--gpus-per-replica",
        type=float,
        default=None,
        metavar="G",
        help="GPUs each replica asks Ray for (default: 1 where the cluster has GPUs, else 0)",
    )
    from ..declare import add_pipeline_arguments

    add_pipeline_arguments(p, scale_flag="--model-scale")  # the same pipeline fields as sdk upscale
    p.set_defaults(func=cmd_serve)


def settings_from(args):
    from .settings import ServeSettings

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if not _is_loopback(args.host) and token is None and not args.no_auth:
        raise SDKError(
            f"--host {args.host} exposes the server beyond this machine: pass --token T "
            f"(or set {TOKEN_ENV}), or --no-auth if something in front of it authenticates"
        )
    if not 0 <= args.port <= 65535:
        raise SDKError(f"--port {args.port} is not a port number (0..65535)")
    return ServeSettings(
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        max_pixels=args.max_pixels,
        max_body_bytes=int(args.max_body_mb * 2**20),
        timeout_s=args.timeout,
        tile=args.tile,
        token=token,
        workers=args.workers,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args) -> int:
    settings = settings_from(args)  # bad flags fail before the model loads
    if args.ray is not None:
        from .ray_serve import cmd_serve as serve_on_ray

        with _logging(args.log_level):
            return serve_on_ray(args, settings)
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise SDKError(
            f"sdk serve needs the 'serve' extra ({exc.name} is missing): pip install 'deploy-sdk[serve]'"
        ) from None
    from ..declare import pipeline_from_args

    with _logging(args.log_level):
        predictor = open_predictor(args.model, args.backend, args.device, pipeline_from_args(args))
        app = create_app(predictor, settings)
        # loop and http stay uvicorn's "auto": uvloop and httptools (the serve extra) where they are
        # installed, asyncio and h11 where not (uvloop has no Windows build).
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=max(0, int(args.grace)),
            lifespan="on",
        )
        server = uvicorn.Server(config)
        # uvicorn re-raises the SIGTERM it caught after its graceful shutdown; with this handler in place
        # that ends the process with 0 (a clean stop) instead of dying by the signal.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        print(
            f"sdk serve: {predictor.model.name} on {predictor.backend} ({predictor.device}) at "
            f"http://{args.host}:{args.port}  (page at /, Open Inference Protocol under /v2)",
            file=sys.stderr,
            flush=True,
        )
        with predictor:
            server.run()
    return 0


# ONNX Runtime's intra-op threads spin-wait for a while after each run, to answer the next run sooner.
# In a server the engine's runs alternate with Python work on the other threads (decoding, pre- and
# post-processing, encoding, HTTP), and on a small CPU that spinning takes their core: measured on
# the 2-core build machine, espcn 64x64 p50 7.75 -> 7.18 ms at one client and 153 -> 158 images/s
# at 16 (benchmarks/results/serve.md has the run with it).
_SERVER_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


def open_predictor(model, backend: str = "auto", device: str = "auto", pipeline=None):
    """The server's Predictor: ``Predictor(model, backend, device, pipeline)``, with the engine options
    that suit a server where the first backend to try takes them (ONNX Runtime on the CPU)."""
    from ..devices import parse_device
    from ..errors import BackendUnavailableError
    from ..predictor import Predictor
    from ..selection import candidates

    options = {}
    try:
        engine, chosen = candidates(backend, parse_device(device))[0]
        if chosen is not None and chosen.kind == "cpu" and engine.accepts("session_config"):
            options["session_config"] = dict(_SERVER_SESSION_CONFIG)
    except SDKError:
        pass  # the Predictor below says what is wrong
    if options:
        try:
            return Predictor(model, backend=backend, device=device, pipeline=pipeline, **options)
        except BackendUnavailableError:
            if backend != "auto":
                raise
            # "auto" passes over backends that do not take the option: let it choose among all of them.
    return Predictor(model, backend=backend, device=device, pipeline=pipeline)


@contextlib.contextmanager
def _logging(level: str):
    """Log lines to stderr; the access log's collected in memory and written by a thread of its own."""
    lines = _Batched(sys.stderr)
    lines.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("sdk.serve.access")
    access.handlers[:] = [lines]
    access.propagate = False
    access.setLevel(logging.INFO if level in ("debug", "info") else logging.WARNING)
    logging.getLogger("sdk").setLevel(level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        yield
    finally:
        lines.stop()


class _Batched(logging.Handler):
    """Records kept in memory and written to ``stream`` by a thread of its own, all that came in
    the last ``interval`` seconds in one write (and what is left when stopped).

    A write to stderr is a system call, and waking a thread to make it costs the waker a context
    switch: either way the event loop would pay for every request. On the 2-core build machine the
    access line's flush was the loop's largest item under load (0.27 ms a request of espcn 64x64 at
    8 clients, by cProfile), and a logging.handlers.QueueListener, woken per record, still cost
    0.05 to 0.12 ms of CPU a request. Appending to a deque wakes nobody; every line is still
    written, in order, at most ``interval`` late."""

    def __init__(self, stream, interval: float = 0.02):
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._records: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._writing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sdk-serve-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)  # atomic: no lock, no wake-up

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        with self._writing:  # one writer at a time, so that lines keep their order
            lines = []
            while self._records:
                record = self._records.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except Exception:  # a closed or broken stderr must not stop the server
                    pass

    def stop(self) -> None:
        """Write what is left and end the thread (the server is done)."""
        self._stop.set()
        self._thread.join(5)
        self.flush()

    # close() is logging's, and is called early: uvicorn's logging.config.dictConfig closes every
    # handler there is, ours included, when the server starts. So closing only writes what is in
    # hand; the thread goes on until stop().
    def close(self) -> None:
        self.flush()
        super().close()
