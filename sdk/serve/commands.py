"""``sdk serve MODEL``: the command line. One process, one model, the app on uvicorn; or, with --ray,
the app as a Ray Serve deployment (sdk.serve.ray_serve)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import threading

from ..errors import SDKError
from .logs import server_logging

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
        "--max-pixels",
        type=int,
        default=d.max_pixels,
        help=f"largest result (and so input) image in pixels, checked before decoding (default {d.max_pixels})",
    )
    p.add_argument(
        "--max-scale",
        type=int,
        default=None,
        help="largest scale a request may ask for (default: the model's fixed scale, or 8 for a runtime-scale model)",
    )
    p.add_argument(
        "--max-images", type=int, default=d.max_images, help=f"images per /v2 request (default {d.max_images})"
    )
    p.add_argument(
        "--max-elements",
        type=int,
        default=d.max_elements,
        help=f"tensor elements per /v2 request, all inputs together (default {d.max_elements})",
    )
    p.add_argument(
        "--max-json-mb",
        type=float,
        default=d.max_json_bytes / 2**20,
        help=f"largest JSON part of a /v2 request in MiB (default {d.max_json_bytes / 2**20:g})",
    )
    p.add_argument(
        "--max-json-depth",
        type=int,
        default=d.max_json_depth,
        help=f"levels of nesting of a /v2 request's JSON (default {d.max_json_depth})",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=d.max_body_bytes / 2**20,
        help=f"largest request body in MiB (default {d.max_body_bytes / 2**20:g})",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        metavar="SIZE",
        help="memory one request may use, e.g. 1GiB or 800MB (default: $SDK_MEMORY_BUDGET, else a quarter of "
        "the memory available, at most 1 GiB)",
    )
    p.add_argument(
        "--timeout", type=float, default=d.timeout_s, help=f"seconds per request before 504 (default {d.timeout_s:g})"
    )
    slow = p.add_argument_group("slow and idle clients (docs/serving-limits.md)")
    slow.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help=f"open connections; more are refused at once (default {d.max_connections}, fewer if the open-file "
        "limit is lower)",
    )
    slow.add_argument(
        "--header-timeout",
        type=float,
        default=d.header_timeout_s,
        help=f"seconds a client has to send a request's headers (default {d.header_timeout_s:g}; 0: no limit)",
    )
    slow.add_argument(
        "--body-timeout",
        type=float,
        default=d.body_timeout_s,
        help=f"seconds for a request's body, plus 1 s per --min-body-rate-mb (default {d.body_timeout_s:g}; "
        "0: no limit)",
    )
    slow.add_argument(
        "--min-body-rate-mb",
        type=float,
        default=d.min_body_rate / 2**20,
        help=f"MiB/s a large body must keep up (default {d.min_body_rate / 2**20:g})",
    )
    slow.add_argument(
        "--max-reading-mb",
        type=float,
        default=d.max_reading_bytes / 2**20,
        help=f"MiB of request bodies being read at once; past it, 503 (default {d.max_reading_bytes / 2**20:g})",
    )
    slow.add_argument(
        "--keep-alive",
        type=float,
        default=d.keep_alive_s,
        help=f"seconds an idle keep-alive connection stays open (default {d.keep_alive_s:g})",
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
    if args.memory_budget is not None:  # a bad size fails here, before the model loads
        from .. import memory

        memory.parse_size(args.memory_budget, "--memory-budget")
    if not 0 <= args.port <= 65535:
        raise SDKError(f"--port {args.port} is not a port number (0..65535)")
    return ServeSettings(
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        max_pixels=args.max_pixels,
        max_scale=args.max_scale,
        max_images=args.max_images,
        max_elements=args.max_elements,
        max_body_bytes=_mib("--max-body-mb", args.max_body_mb),
        max_json_bytes=_mib("--max-json-mb", args.max_json_mb),
        max_json_depth=args.max_json_depth,
        timeout_s=args.timeout,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        min_body_rate=_mib("--min-body-rate-mb", args.min_body_rate_mb),
        max_reading_bytes=_mib("--max-reading-mb", args.max_reading_mb),
        keep_alive_s=args.keep_alive,
        tile=args.tile,
        token=token,
        workers=args.workers,
    )


def _mib(flag: str, value: float) -> int:
    if not 0 < value < 2**20:  # also NaN
        raise SDKError(f"{flag} {value:g} must be a number of MiB above 0, e.g. 64")
    return int(value * 2**20)


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
        with server_logging(args.log_level):
            return _serve_on_ray(args, settings)
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise SDKError(
            f"sdk serve needs the 'serve' extra ({exc.name} is missing): pip install 'deploy-sdk[serve]'"
        ) from None
    from ..declare import pipeline_from_args
    from .predictor import open_predictor

    with server_logging(args.log_level):
        predictor = open_predictor(
            args.model, args.backend, args.device, pipeline_from_args(args), memory_budget=args.memory_budget
        )
        app = create_app(predictor, settings)
        # loop and http stay uvicorn's "auto": uvloop and httptools (the serve extra) where they are
        # installed, asyncio and h11 where not (uvloop has no Windows build); the protocol gets the
        # connection limit and the header deadline uvicorn lacks.
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        from .connections import connection_limit, guarded

        protocol = guarded(AutoHTTPProtocol, connection_limit(settings.max_connections), settings.header_timeout_s)
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            http=protocol,
            timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type,unused-ignore]  # a float works
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


def _serve_on_ray(args, settings) -> int:
    """Start (or join) a Ray cluster, run the deployment behind Ray Serve's HTTP proxy, and stay up
    until SIGTERM or Ctrl-C, then take the application down."""
    from ..declare import pipeline_from_args
    from ..scale.ray import LOCAL
    from .ray_serve import APP_NAME, build

    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise SDKError(f"--ray needs Ray Serve ({exc}); install it with pip install 'deploy-sdk[serve,ray]'") from None
    autoscaling = None
    if args.autoscaling:
        try:
            autoscaling = json.loads(args.autoscaling)
        except json.JSONDecodeError as exc:
            raise SDKError(
                f'--autoscaling must be a JSON object such as \'{{"min_replicas": 1, "max_replicas": 4}}\' ({exc})'
            ) from None
        if not isinstance(autoscaling, dict):
            raise SDKError("--autoscaling must be a JSON object of Ray Serve's autoscaling_config fields")
    ray.init(address=args.ray or LOCAL, logging_level="warning")
    stop = threading.Event()
    try:
        num_gpus = args.gpus_per_replica
        if num_gpus is None:
            wants_gpu = args.device.startswith("cuda") or (
                args.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0
            )
            num_gpus = 1 if wants_gpu else 0
        app = build(
            args.model,
            backend=args.backend,
            device=args.device,
            pipeline=pipeline_from_args(args),
            settings=settings,
            replicas=args.replicas,
            autoscaling=autoscaling,
            num_gpus=num_gpus,
            memory_budget=args.memory_budget,
        )
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name=APP_NAME, route_prefix="/")
        how = f"autoscaling {autoscaling}" if autoscaling else f"{args.replicas} replica(s)"
        print(
            f"sdk serve: {args.model} on Ray Serve, {how}, {num_gpus:g} GPU(s) each, at http://{args.host}:{args.port}",
            file=sys.stderr,
            flush=True,
        )
        # Set after ray.init, which installs a SIGTERM handler of its own.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())
        stop.wait()
    finally:
        # Bounded: when the signal went to the whole process group, the local cluster's own processes
        # are already gone and serve.shutdown() would wait for them forever.
        closer = threading.Thread(target=serve.shutdown, daemon=True)
        closer.start()
        closer.join(max(5.0, args.grace))
        ray.shutdown()
    return 0
