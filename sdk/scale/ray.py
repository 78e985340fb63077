"""Upscaling folders of images on a Ray cluster, with Ray Data's actor pools.

The job is the local ``sdk upscale`` job spread over actors. The driver lists the inputs, plans the
output names and leaves out those already written, so a re-run resumes where the last one stopped.
Each actor holds one Predictor and, for each input, reads the file, decodes it with the SDK's own
reader (the same orientation and colour handling as a local run), upscales it (big images are tiled
inside the Predictor) and writes the result atomically. Only small status rows go back to the
driver: no image crosses the object store.

Inputs and outputs must be on storage that every node sees under the same path (NFS, a mounted
bucket); the model itself travels through Ray's object store, so it only has to exist on the driver.

Nothing here imports Ray at module level: ``import sdk.scale.ray`` is as light as ``import sdk``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import tiling
from ..errors import SDKError
from ..jobs import Summary
from .cluster import import_ray
from .shipping import open_shipped, ship_model

# Ray Data restarts a dead actor and retries its batch without bound by default; a batch that kills
# its actor every time (a crashing engine, an out-of-memory kill) would then stall the job forever.
DEFAULT_MAX_RESTARTS = 3
DEFAULT_MAX_TASK_RETRIES = 3


# -- the callable classes for Dataset.map_batches -------------------------------------------------


class Upscaler:
    """One Predictor per Ray actor, for ``Dataset.map_batches`` over a column of images.

    >>> ds = ray.data.read_images("s3://bucket/small/")            # a column "image" of HxWx3 uint8
    >>> ds.map_batches(Upscaler, fn_constructor_kwargs={"model": "srcnn3", "scale": 3},
    ...                batch_size=4, compute=ray.data.ActorPoolStrategy(size=2))

    Each batch's ``image`` column is replaced by the upscaled images; other columns pass through.
    ``model`` is a bundled name, a path that exists on every node, or what :func:`ship_model`
    returns; ``pipeline``, ``memory_budget`` and ``options`` are the Predictor's own, ``tile`` its
    call's ("auto": big images are tiled to fit the memory budget).
    """

    def __init__(
        self,
        model="srcnn3",
        scale=None,
        backend: str = "auto",
        device: str = "auto",
        pipeline: Mapping | None = None,
        tile="auto",
        memory_budget=None,
        options: Mapping | None = None,
    ):
        from ..predictor import Predictor

        self.predictor = Predictor(
            open_shipped(model),
            backend=backend,
            device=device,
            pipeline=pipeline,
            memory_budget=memory_budget,
            **dict(options or {}),
        )
        self.scale = self.predictor.check_scale(scale)
        self.tile = tiling.parse_tile(tile)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return {**batch, "image": [self.predictor(image, scale=self.scale, tile=self.tile) for image in batch["image"]]}


class FileUpscaler(Upscaler):
    """The folder job's actor: rows of ``source`` and ``target`` paths in, one status row out each.

    Each file goes through the local job's own steps (:func:`sdk.jobs.upscale_file`): decoded upright
    with its ICC profile and EXIF, tiled when big, written atomically. A bad input or a failed write
    is a row with the reason, never an exception: one corrupt file must not cost its batch (a raised
    exception would send the whole batch to retry, then drop it).
    """

    def __init__(self, orient: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.orient = orient

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..images import decode
        from ..jobs import upscale_file

        errors = []
        for source, target in zip(batch["source"], batch["target"]):
            try:
                upscale_file(self.predictor, decode(str(source), self.orient), Path(str(target)), self.scale, self.tile)
            except (SDKError, OSError) as exc:
                errors.append(str(exc))
            else:
                errors.append("")
        backend = f"{self.predictor.backend} on {self.predictor.device}"
        return {
            "source": batch["source"],
            "error": np.array(errors, dtype=object),
            "backend": np.array([backend] * len(errors), dtype=object),
        }


# -- the whole job -----------------------------------------------------------------------------


def pool_size(ray, items: int, actors: int | None, gpus_per_actor: float | None) -> tuple[int, float]:
    """(actors, GPUs per actor) for ``items`` pieces of work on the cluster (``ray.init()`` first if
    not connected): by default one actor per GPU on a cluster with GPUs, else one per node with CPUs,
    and never more actors than items."""
    if not ray.is_initialized():
        ray.init()
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_actor is None:
        gpus_per_actor = 1 if gpus else 0
    if actors is None:
        # Ray Data spreads an actor pool over the nodes. Nodes without CPUs (a head node started with
        # --num-cpus=0, as clusters often are) take no actor.
        cpu_nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        actors = int(gpus // gpus_per_actor) if gpus_per_actor else len(cpu_nodes)
    return max(1, min(int(actors), items)), gpus_per_actor


@dataclass
class RaySummary(Summary):
    """The local job's summary (same counts, same exit codes) plus where the work ran."""

    scale: int = 0
    actors: int = 0
    backends: set[str] = field(default_factory=set)  # "ort-cpu on cpu": what the actors ran on
    seconds: float = 0.0

    @property
    def where(self) -> str:
        backends = ", ".join(sorted(self.backends)) or "no backend started"
        return f"Ray with {self.actors} actor(s) ({backends}) in {self.seconds:.1f} s"


def check_scale(model, scale, pipeline: Mapping | None = None) -> int:
    """The scale the job runs at, checked on the driver so that a bad one costs no cluster time."""
    from ..model import Model
    from ..pipeline import Pipeline
    from ..resolution import resolve

    loaded = Model(model)
    return Pipeline(resolve(loaded, pipeline).spec, loaded).check_scale(scale)


def upscale_files(
    inputs: Iterable,
    output,
    *,
    model="srcnn3",
    scale: int | None = None,
    backend: str = "auto",
    device: str = "auto",
    pipeline: Mapping | None = None,
    tile="auto",
    memory_budget=None,
    force: bool = False,
    orient: bool = True,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float = 1,
    batch_size: int = 4,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    max_task_retries: int = DEFAULT_MAX_TASK_RETRIES,
    options: Mapping | None = None,
    upscaler: type[FileUpscaler] = FileUpscaler,
) -> RaySummary:
    """Upscale image files and folders into ``output`` on the Ray cluster this process is attached to.

    The same job as ``sdk upscale`` (:mod:`sdk.jobs`): outputs that exist are skipped (``force=True``
    redoes them) and temporary files of killed runs are removed. Connects with ``ray.init()`` first if
    not connected yet. ``actors`` defaults to one per GPU on a cluster with GPUs (``gpus_per_actor``
    1) and to one per node otherwise (a CPU engine uses all of a node's cores). A dead actor is
    restarted up to ``max_restarts`` times and its batch retried up to ``max_task_retries`` times;
    inputs lost even so are reported as failed, and a re-run retries them. An
    :class:`sdk.jobs.Interrupted` (see :func:`sdk.jobs.stop_on_signals`) stops the job with the
    summary so far.
    """
    from .. import jobs

    ray = import_ray()
    started = time.perf_counter()
    pairs = jobs.plan_outputs(jobs.collect_images(list(inputs)), Path(output))
    scale = check_scale(model, scale, pipeline)
    tile = tiling.parse_tile(tile)  # a bad tile fails here, before any cluster time
    todo, done = jobs.split_existing(pairs, force)
    summary = RaySummary(
        planned=len(pairs), skipped=len(done), removed_parts=jobs.remove_stale_parts(pairs), scale=scale
    )
    if not todo:
        return summary
    summary.actors, gpus_per_actor = pool_size(ray, len(todo), actors, gpus_per_actor)

    dataset = ray.data.from_items([{"source": str(source), "target": str(target)} for source, target in todo])
    with warnings.catch_warnings():
        # max_restarts/max_task_retries have no named parameter in Ray 2.60 yet (hence the extra's
        # upper bound); without them Ray Data retries a batch that kills its actor forever.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = dataset.map_batches(
            upscaler,
            fn_constructor_kwargs={
                "model": ship_model(model),
                "scale": scale,
                "backend": backend,
                "device": device,
                "pipeline": pipeline,
                "tile": tile,
                "memory_budget": memory_budget,
                "options": options,
                "orient": orient,
            },
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=summary.actors),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor or None,
            max_restarts=max_restarts,
            max_task_retries=max_task_retries,
        )
    context = ray.data.DataContext.get_current()
    # A batch whose retries are spent is dropped, not fatal: its inputs are reported below.
    previous, context.max_errored_blocks = context.max_errored_blocks, -1
    seen = set()
    try:
        for row in dataset.iter_rows():
            seen.add(row["source"])
            summary.backends.add(row["backend"])
            if row["error"]:
                summary.failures.append((Path(row["source"]), row["error"]))
            else:
                summary.written += 1
        summary.failures += [
            (source, "lost: its actor failed more often than allowed; run the job again to retry it")
            for source, _ in todo
            if str(source) not in seen
        ]
    except jobs.Interrupted as exc:
        summary.interrupted = exc.signum
    finally:
        context.max_errored_blocks = previous
        summary.seconds = time.perf_counter() - started
    return summary


# -- `sdk upscale --ray` ---------------------------------------------------------------------------

LOCAL = "local"


def cmd_upscale(args) -> int:
    """``sdk upscale IN... -o OUT --ray [ADDRESS]``: the local command's job, on a Ray cluster.

    No ADDRESS starts a private local cluster for this run; ``auto`` joins the one this machine runs
    (``ray start`` or ``RAY_ADDRESS``); ``ray://HOST:10001`` or ``HOST:6379`` joins a remote one.
    Exit codes are the local command's: 0 all done, 1 some inputs failed, 130/143 interrupted.
    """
    from .. import jobs
    from ..declare import pipeline_from_args

    ray = import_ray()
    tile = tiling.parse_tile(args.tile, "--tile ")
    ray.init(address=args.ray or LOCAL, logging_level="warning")
    try:
        # After ray.init, which sets a SIGTERM handler of its own that exits with status 15.
        with jobs.stop_on_signals():
            summary = upscale_files(
                args.inputs,
                args.output,
                model=args.model,
                scale=args.scale,
                backend=args.backend,
                device=args.device,
                pipeline=pipeline_from_args(args),
                tile=tile,
                memory_budget=args.memory_budget,
                force=args.force,
                orient=not args.no_exif_orientation,
            )
    finally:
        ray.shutdown()
    for line in summary.lines(summary.scale, summary.where, args.output):
        print(f"sdk: {line}", file=sys.stderr)
    return summary.exit_code
