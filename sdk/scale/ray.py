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

import contextlib
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import SDKError

INSTALL_HINT = "pip install 'deploy-sdk[cpu,ray]'"
# Ray Data restarts a dead actor and retries its batch without bound by default; a batch that kills
# its actor every time (a crashing engine, an out-of-memory kill) would then stall the job forever.
DEFAULT_MAX_RESTARTS = 3
DEFAULT_MAX_TASK_RETRIES = 3


def import_ray():
    """``ray`` with Ray Data, or an SDKError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the job needs Ray Data, not only Ray Core)
    except ImportError as exc:
        raise SDKError(f"running on Ray needs Ray Data ({exc}); install it with {INSTALL_HINT}") from exc
    return ray


# -- the model travels with the actors -----------------------------------------------------------

def ship_model(model) -> Any:
    """What an actor needs to open ``model`` on any node.

    A bundled model travels as its name (every node has the package). A file travels as its bytes,
    and those of its external-data files, put once into Ray's object store; each node writes them
    into a folder named after their digest, so actors on one node share one copy.
    """
    from ..model import BUNDLED, Model

    if isinstance(model, str) and model in BUNDLED:
        return model
    ray = import_ray()
    loaded = Model(model)  # a bad path fails here, on the driver, before any actor starts
    files = {p.name: p.read_bytes() for p in [loaded.path, *loaded._external_files()]}
    return {"digest": loaded.sha256, "main": loaded.path.name, "files": ray.put(files)}


def _open_shipped(model) -> str | Path:
    if not isinstance(model, Mapping):
        return model
    from ..files import atomic_write

    folder = Path(tempfile.gettempdir()) / "sdk-ray-models" / model["digest"]
    main = folder / model["main"]
    if not main.is_file():
        import ray

        for name, data in ray.get(model["files"]).items():
            atomic_write(folder / name, data)  # a concurrent actor on this node writes the same bytes
    return main


# -- the callable classes for Dataset.map_batches -------------------------------------------------

class Upscaler:
    """One Predictor per Ray actor, for ``Dataset.map_batches`` over a column of images.

    >>> ds = ray.data.read_images("s3://bucket/small/")            # a column "image" of HxWx3 uint8
    >>> ds.map_batches(Upscaler, fn_constructor_kwargs={"model": "srcnn3", "scale": 3},
    ...                batch_size=4, compute=ray.data.ActorPoolStrategy(size=2))

    Each batch's ``image`` column is replaced by the upscaled images; other columns pass through.
    ``model`` is a bundled name, a path that exists on every node, or what :func:`ship_model`
    returns; ``pipeline`` and ``options`` are the Predictor's own.
    """

    def __init__(self, model="srcnn3", scale=None, backend: str = "auto", device: str = "auto",
                 pipeline: Mapping | None = None, tile: int | None = None, options: Mapping | None = None):
        from ..predictor import Predictor

        kwargs = {"pipeline": dict(pipeline)} if pipeline else {}
        self.predictor = Predictor(_open_shipped(model), backend=backend, device=device, **kwargs, **dict(options or {}))
        self.scale = self.predictor.pipeline.check_scale(scale)
        self.tile = tile

    def upscale(self, image) -> np.ndarray:
        return self.predictor(image, scale=self.scale, tile=self.tile)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return {**batch, "image": [self.upscale(image) for image in batch["image"]]}


class FileUpscaler(Upscaler):
    """The folder job's actor: rows of ``source`` and ``target`` paths in, one status row out each.

    A bad input or a failed write is a ``failed`` row with the reason, never an exception: one
    corrupt file must not cost its batch (a raised exception would send the whole batch to retry).
    """

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..images import save_atomic, to_rgb

        errors = []
        for source, target in zip(batch["source"], batch["target"]):
            try:
                save_atomic(self.upscale(to_rgb(str(source))), Path(str(target)))
            except (SDKError, OSError) as exc:
                errors.append(str(exc))
            else:
                errors.append("")
        engine = f"{self.predictor.backend} on {self.predictor.device}"
        return {
            "source": batch["source"],
            "error": np.array(errors, dtype=object),
            "engine": np.array([engine] * len(errors), dtype=object),
        }


# -- the whole job -----------------------------------------------------------------------------

@dataclass
class JobSummary:
    """What a job did. ``failed`` maps each input that did not get an output to the reason."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    engines: set[str] = field(default_factory=set)
    actors: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self, output) -> list[str]:
        engines = ", ".join(sorted(self.engines)) or "no engine (nothing to do)"
        head = (f"upscaled {self.done} of {self.total} image(s) on Ray with {self.actors} actor(s) ({engines})"
                f" in {self.seconds:.1f} s -> {output}")
        if self.skipped:
            head += f"; {self.skipped} already done, skipped"
        return [head] + [f"sdk: skipped {source}: {reason}" for source, reason in self.failed.items()]


def plan_job(inputs: Iterable, output, force: bool = False) -> tuple[list[tuple[Path, Path]], int]:
    """The (source, target) pairs still to do, and how many are done already (their output exists)."""
    from ..cli import collect_images, plan_outputs

    pairs = plan_outputs(collect_images([str(i) for i in inputs]), Path(output))
    todo = pairs if force else [(s, t) for s, t in pairs if not t.exists()]
    return todo, len(pairs) - len(todo)


def check_scale(model, scale, pipeline: Mapping | None = None) -> int:
    """The scale the job runs at, checked on the driver so that a bad one costs no cluster time."""
    from ..model import Model
    from ..pipeline import Pipeline
    from ..spec import resolve

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
    tile: int | None = None,
    force: bool = False,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float = 1,
    batch_size: int = 4,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    max_task_retries: int = DEFAULT_MAX_TASK_RETRIES,
    options: Mapping | None = None,
    upscaler: type[FileUpscaler] = FileUpscaler,
) -> JobSummary:
    """Upscale image files and folders into ``output`` on the Ray cluster this process is attached to.

    Connects with ``ray.init()`` first if it is not connected yet. Inputs whose output exists are
    skipped (``force=True`` redoes them). ``actors`` defaults to one per GPU on a cluster with GPUs
    (``gpus_per_actor`` 1) and to one per node otherwise (the CPU engines use all of a node's cores).
    A dead actor is restarted up to ``max_restarts`` times and its batch retried up to
    ``max_task_retries`` times; inputs lost even so are reported as failed, and a re-run retries them.
    """
    ray = import_ray()
    started = time.perf_counter()
    todo, skipped = plan_job(inputs, output, force)
    scale = check_scale(model, scale, pipeline)
    summary = JobSummary(total=len(todo) + skipped, skipped=skipped)
    if not todo:
        return summary
    if not ray.is_initialized():
        ray.init()
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_actor is None:
        gpus_per_actor = 1 if gpus else 0
    if actors is None:
        actors = int(gpus // gpus_per_actor) if gpus_per_actor else len([n for n in ray.nodes() if n["Alive"]])
    actors = max(1, min(int(actors), len(todo)))
    summary.actors = actors

    rows = [{"source": str(source), "target": str(target)} for source, target in todo]
    dataset = ray.data.from_items(rows)
    with warnings.catch_warnings():
        # max_restarts/max_task_retries have no named parameter in Ray 2.60 yet (hence the extra's
        # upper bound); without them Ray Data retries a batch that kills its actor forever.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = dataset.map_batches(
            upscaler,
            fn_constructor_kwargs={"model": ship_model(model), "scale": scale, "backend": backend, "device": device,
                                   "pipeline": pipeline, "tile": tile, "options": options},
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
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
            summary.engines.add(row["engine"])
            if row["error"]:
                summary.failed[row["source"]] = row["error"]
            else:
                summary.done += 1
    finally:
        context.max_errored_blocks = previous
    for source, _ in todo:
        if str(source) not in seen:
            summary.failed[str(source)] = "lost when its actor failed more often than allowed; run the job again to retry it"
    summary.seconds = time.perf_counter() - started
    return summary


# -- `sdk upscale --ray` ---------------------------------------------------------------------------

LOCAL = "local"


def cmd_upscale(args) -> int:
    """``sdk upscale IN... -o OUT --ray [ADDRESS]``: the local command's job, on a Ray cluster.

    No ADDRESS starts a private local cluster for this run; ``auto`` joins the one this machine runs
    (``ray start`` or ``RAY_ADDRESS``); ``ray://HOST:10001`` or ``HOST:6379`` joins a remote one.
    """
    from ..declare import pipeline_from_args

    ray = import_ray()
    try:
        with _terminate_as_interrupt():
            ray.init(address=args.ray or LOCAL, logging_level="warning")
            try:
                summary = upscale_files(
                    args.inputs, args.output, model=args.model, scale=args.scale, backend=args.backend,
                    device=args.device, pipeline=pipeline_from_args(args), tile=args.tile, force=args.force,
                )
            finally:
                ray.shutdown()
    except Terminated:
        print("sdk: terminated", file=sys.stderr)
        return Terminated.exit_code
    for line in summary.lines(args.output):
        print(line, file=sys.stderr)
    return 0 if summary.ok else 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the driver is, so that the job and Ray stop as on Ctrl-C."""

    exit_code = 143


@contextlib.contextmanager
def _terminate_as_interrupt():
    def raise_terminated(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: leave signals to whoever owns it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
