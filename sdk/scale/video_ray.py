"""Upscaling a long video on a Ray cluster: its segments in parallel, joined into one file.

The driver plans the job exactly as a local run does (:func:`sdk.video.job.prepare`: the same
keyframe segments, encoder and streams to copy), so the result equals the local one frame for frame.
Each Ray actor holds one Predictor and runs whole segments through the local pipeline, writing each
finished segment into the job's hidden folder beside the output; the driver then joins them with
the source's audio and subtitles, copied once. Segments already finished (by an earlier run, local
or on Ray) are not redone.

The source and the output folder must be on storage every node sees under the same path; the model
travels through Ray's object store as for image jobs (:func:`sdk.scale.ray.ship_model`).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SDKError
from .ray import DEFAULT_MAX_RESTARTS, DEFAULT_MAX_TASK_RETRIES, LOCAL, Upscaler, import_ray, pool_size
from .shipping import ship_model

if TYPE_CHECKING:  # the video stack (PyAV) is imported when a job runs
    from ..video.job import VideoSummary


class SegmentUpscaler(Upscaler):
    """One Predictor per actor; each row names a segment of the job, which the actor upscales and
    writes into the job's folder. A failure is a row with the reason, never an exception."""

    def __init__(self, job=None, batch: int = 4, **kwargs):
        super().__init__(scale=job.scale, **kwargs)
        self.job, self.batch = job, batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..video import job as video_job
        from ..video.segments import Workspace

        space = Workspace(self.job.output, self.job.identity)  # opened (and cleaned) by the driver
        errors, lost = [], []
        for index in batch["segment"]:
            segment = self.job.segments[int(index)]
            found: list[str] = []
            try:
                if not space.done(segment):
                    video_job.encode_segments(
                        self.predictor, self.job, [segment], space, self.tile, self.batch, lambda n: None, found
                    )
            except (SDKError, OSError) as exc:
                errors.append(str(exc))
            else:
                errors.append("")
            lost.append("; ".join(found))
        backend = f"{self.predictor.backend} on {self.predictor.device}"
        return {
            "segment": batch["segment"],
            "error": np.array(errors, dtype=object),
            "lost": np.array(lost, dtype=object),
            "backend": np.array([backend] * len(errors), dtype=object),
        }


@dataclass
class RayVideoSummary:
    """What a video job on Ray did (the local summary's facts, plus where it ran)."""

    summary: VideoSummary
    actors: int
    backends: set[str]  # "ort-cpu on cpu": what the actors ran on (as in the image job's summary)
    failures: list[str]


def model_facts(model, pipeline: Mapping | None = None) -> SimpleNamespace:
    """What :func:`sdk.video.job.prepare` reads of a Predictor (model, spec, pipeline), without opening
    an engine on the driver."""
    from ..model import Model
    from ..pipeline import Pipeline
    from ..resolution import resolve

    loaded = Model(model)
    spec = resolve(loaded, pipeline).spec
    return SimpleNamespace(model=loaded, spec=spec, pipeline=Pipeline(spec, loaded))


def upscale_video(
    input_path,
    output_path,
    *,
    model="srcnn3",
    scale: int | None = None,
    backend: str = "auto",
    device: str = "auto",
    pipeline: Mapping | None = None,
    tile="auto",
    memory_budget=None,
    settings=None,
    drop_streams: bool = False,
    segment_seconds: float | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float = 1,
    options: Mapping | None = None,
) -> RayVideoSummary:
    """Upscale one video on the Ray cluster this process is attached to (``ray.init()`` first if not);
    the options are :func:`sdk.video.upscale_video`'s plus the actor pool's."""
    from ..video import job as video_job
    from ..video.join import join
    from ..video.segments import Workspace

    ray = import_ray()
    started = time.perf_counter()
    seconds = video_job.DEFAULT_SEGMENT_SECONDS if segment_seconds is None else segment_seconds
    facts = model_facts(model, pipeline)
    job = video_job.prepare(facts, input_path, output_path, scale, settings, drop_streams, seconds)
    space = Workspace(job.output, job.identity).open()
    todo = [s.index for s in job.segments if not space.done(s)]
    summary = video_job.VideoSummary(job.source.path, job.output, segments=len(job.segments), dropped=job.copy.dropped)
    summary.resumed_segments = len(job.segments) - len(todo)
    result = RayVideoSummary(summary, 0, set(), [])
    if todo:
        result.actors, gpus_per_actor = pool_size(ray, len(todo), actors, gpus_per_actor)
        rows = _run(
            ray,
            job,
            todo,
            model,
            backend,
            device,
            pipeline,
            tile,
            memory_budget,
            options,
            result.actors,
            gpus_per_actor,
            cpus_per_actor,
        )
        for row in rows:
            result.backends.add(row["backend"])
            if row["error"]:
                result.failures.append(f"segment {row['segment']}: {row['error']}")
            if row["lost"]:
                summary.lost.append(row["lost"])
        summary.upscaled = sum(job.segments[i].frames for i in todo if space.done(job.segments[i]))
    missing = [s.index for s in job.segments if not space.done(s)]
    if missing:
        result.failures.append(f"segment(s) {missing} not finished: run the same command again to retry them")
    else:
        join(job.source, [space.segment_path(s) for s in job.segments], job.copy, job.output, job.container, job.plan)
        space.remove()
        summary.frames = job.source.frames - sum(int(text.split(" ", 1)[0]) for text in summary.lost if text)
    summary.seconds = time.perf_counter() - started
    return result


def _run(ray, job, todo, model, backend, device, pipeline, tile, memory_budget, options, actors, gpus, cpus) -> list:
    dataset = ray.data.from_items([{"segment": index} for index in todo])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = dataset.map_batches(
            SegmentUpscaler,
            fn_constructor_kwargs={
                "job": job,
                "model": ship_model(model),
                "backend": backend,
                "device": device,
                "pipeline": pipeline,
                "tile": tile,
                "memory_budget": memory_budget,
                "options": options,
            },
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus or None,
            max_restarts=DEFAULT_MAX_RESTARTS,
            max_task_retries=DEFAULT_MAX_TASK_RETRIES,
        )
    context = ray.data.DataContext.get_current()
    previous, context.max_errored_blocks = context.max_errored_blocks, -1
    try:
        return list(dataset.iter_rows())
    finally:
        context.max_errored_blocks = previous


def cmd_upscale(args, videos: list[Path], images: list[str]) -> int:
    """``sdk upscale clip.mkv -o out.mkv --ray [ADDRESS]``: each video's segments on Ray actors."""
    from ..declare import pipeline_from_args
    from ..jobs import Interrupted, stop_on_signals
    from ..tiling import parse_tile
    from ..video import commands

    if images:
        raise SDKError("--ray takes either videos or images in one command; run the images in a second command")
    ray = import_ray()
    pairs = commands.plan_outputs(videos, Path(args.output), alone=True)
    ray.init(address=args.ray or LOCAL, logging_level="warning")
    code = 0
    try:
        with stop_on_signals():
            for video, output in pairs:
                if output.exists() and not args.force:
                    print(f"sdk: skipped {output}: it exists (pass --force to redo it)", file=sys.stderr)
                    continue
                done = upscale_video(
                    video,
                    output,
                    model=args.model,
                    scale=args.scale,
                    backend=args.backend,
                    device=args.device,
                    pipeline=pipeline_from_args(args),
                    tile=parse_tile(args.tile, "--tile "),
                    memory_budget=args.memory_budget,
                    settings=commands.settings_from(args),
                    drop_streams=args.drop_streams,
                    segment_seconds=args.segment_seconds,
                )
                where = f"Ray with {done.actors} actor(s) ({', '.join(sorted(done.backends)) or 'no backend started'})"
                s = done.summary
                print(f"sdk: upscaled {s.source} -> {s.output}: {s.frames} frame(s) on {where}", file=sys.stderr)
                for line in done.failures + s.lost:
                    print(f"sdk: {line}", file=sys.stderr)
                code = max(code, 1 if done.failures else 0)
    except Interrupted as exc:
        print("sdk: interrupted: run the same command again to go on", file=sys.stderr)
        return 128 + exc.signum
    finally:
        ray.shutdown()
    return code
