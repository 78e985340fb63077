"""``sdk serve MODEL --ray``: the same app as a Ray Serve deployment, one engine per replica.

Each replica builds its own Predictor (its own engine, its own batching thread) and serves the very
app ``create_app`` returns, so the endpoints, limits, token and page are the same as on one machine;
Ray Serve's proxy spreads requests over the replicas and restarts one that dies. A replica asks Ray
for ``num_gpus`` (1 on a cluster with GPUs, unless told otherwise), so replicas spread over the GPUs.

Nothing here imports Ray at module level.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Mapping

from ..errors import SDKError

APP_NAME = "sdk"


def build(model, *, backend: str = "auto", device: str = "auto", pipeline: Mapping | None = None, settings=None,
          replicas: int = 1, autoscaling: Mapping | None = None, num_gpus: float | None = None,
          num_cpus: float | None = None):
    """The bound Ray Serve application (pass it to ``serve.run``). ``autoscaling`` is Ray Serve's
    ``autoscaling_config`` as it is (min_replicas, max_replicas, target_ongoing_requests ...)."""
    from ray import serve

    from ..scale.ray import ship_model
    from .settings import ServeSettings

    settings = settings or ServeSettings()
    if autoscaling is None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1):
        raise SDKError(f"--replicas {replicas!r} must be a whole number >= 1")
    shipped = ship_model(model)

    class Replica:
        def __init__(self, shipped, backend, device, pipeline, settings):
            from ..predictor import Predictor
            from ..scale.ray import _open_shipped

            self.predictor = Predictor(_open_shipped(shipped), backend=backend, device=device, pipeline=pipeline)
            self.settings = settings

        def __serve_build_asgi_app__(self):
            from .app import create_app

            return create_app(self.predictor, self.settings)

    actor_options: dict[str, Any] = {"num_gpus": float(num_gpus or 0)}
    if num_cpus is not None:
        actor_options["num_cpus"] = float(num_cpus)
    options: dict[str, Any] = {"name": "sdk-serve", "ray_actor_options": actor_options,
                               # Admission past this is the app's own 503; Ray's queue must not hold more.
                               "max_ongoing_requests": settings.max_queue}
    if autoscaling is not None:
        options["autoscaling_config"] = dict(autoscaling)
    else:
        options["num_replicas"] = replicas
    deployment = serve.deployment(serve.ingress()(Replica), **options)
    return deployment.bind(shipped, backend, device, dict(pipeline) if pipeline else None, settings)


def cmd_serve(args, settings) -> int:
    """Start (or join) a Ray cluster, run the deployment behind Ray Serve's HTTP proxy, and stay up
    until SIGTERM or Ctrl-C, then take the application down."""
    from ..declare import pipeline_from_args
    from ..scale.ray import LOCAL

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
            raise SDKError(f"--autoscaling must be a JSON object such as "
                           f"'{{\"min_replicas\": 1, \"max_replicas\": 4}}' ({exc})") from None
        if not isinstance(autoscaling, dict):
            raise SDKError("--autoscaling must be a JSON object of Ray Serve's autoscaling_config fields")
    ray.init(address=args.ray or LOCAL, logging_level="warning")
    stop = threading.Event()
    try:
        num_gpus = args.gpus_per_replica
        if num_gpus is None:
            wants_gpu = args.device.startswith("cuda") or (args.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
            num_gpus = 1 if wants_gpu else 0
        app = build(args.model, backend=args.backend, device=args.device, pipeline=pipeline_from_args(args),
                    settings=settings, replicas=args.replicas, autoscaling=autoscaling, num_gpus=num_gpus)
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name=APP_NAME, route_prefix="/")
        how = f"autoscaling {autoscaling}" if autoscaling else f"{args.replicas} replica(s)"
        print(f"sdk serve: {args.model} on Ray Serve, {how}, {num_gpus:g} GPU(s) each, at "
              f"http://{args.host}:{args.port}", file=sys.stderr, flush=True)
        import signal

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
