"""One video file upscaled into another: planned, cut into segments, run as a pipeline, joined.

Everything that can be refused is refused before any work: a file that is no video, an encoder that
cannot take the result's size or pixel format, a stream the output container cannot hold. Then each
unfinished segment runs through the stages

    decode (PyAV) -> RGB (the stream's colorimetry) -> engine (the Predictor, batched)
    -> YCbCr (the same colorimetry) -> encode and write (PyAV)

each in a thread of its own with small queues between them; the segments are joined with the
source's other streams, and the output is renamed into place. See :mod:`sdk.video.segments` for
resuming and :mod:`sdk.video.join` for the join.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import memory
from ..errors import InputError
from . import encoder, frames, libav, segments, source, stages, streams
from .encoder import EncoderSettings
from .packets import PacketWriter

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SECONDS = 20.0
BATCH = 4  # frames per engine run on an accelerator, when the model has a dynamic batch axis
# On the CPU one frame per run: as fast per frame as four once ONNX Runtime stops spinning between
# runs (sdk.video.engine), and the engine's buffers for one frame instead of four (espcn x3 from
# 640x360: peak RSS of the whole job 1769 -> 882 MiB at 100 frames).
CPU_BATCH = 1


@dataclass
class VideoSummary:
    """What one video job did."""

    source: Path
    output: Path
    frames: int = 0  # frames in the output
    upscaled: int = 0  # frames this run upscaled (the rest were done by an earlier, interrupted run)
    segments: int = 0
    resumed_segments: int = 0
    lost: list[str] = field(default_factory=list)  # where damaged frames were left out
    damage: str | None = None  # where the container itself is damaged (frames there never reach the decoder)
    dropped: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class Job:
    """Everything decided before the work starts."""

    source: source.VideoSource
    output: Path
    container: str
    plan: encoder.EncoderPlan
    copy: streams.CopyPlan
    segments: tuple[segments.Segment, ...]
    scale: int
    identity: dict


def prepare(
    predictor,
    input_path,
    output_path,
    scale=None,
    settings: EncoderSettings | None = None,
    drop_streams: bool = False,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
) -> Job:
    """Probe, choose and check everything; raises an InputError before any work."""
    input_path, output_path = Path(input_path), Path(output_path)
    container = encoder.container_format(output_path)
    if output_path.resolve() == input_path.resolve():
        raise InputError(f"output {output_path} would overwrite the input; choose another name")
    found = source.probe(input_path)
    if found.colorimetry.assumed:
        log.warning(
            "%s has no colour tags for %s: following FFmpeg's defaults; the output is tagged with them",
            input_path,
            ", ".join(found.colorimetry.assumed),
        )
    if found.damage:
        log.warning("%s: %s; the frames around it are upscaled", input_path, found.damage)
    scale = predictor.pipeline.check_scale(scale)
    plan = encoder.plan(settings or EncoderSettings(), found, container, scale)
    copy = streams.plan(input_path, found.index, plan.codec, container, drop=drop_streams)
    cut = tuple(segments.split(found, segment_seconds))
    stat = input_path.stat()
    identity = {
        "version": 1,
        "source": str(input_path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "model": predictor.model.sha256,
        "pipeline": dict(vars(predictor.spec)),
        "scale": scale,
        "encoder": {"codec": plan.codec, "pix_fmt": plan.pix_fmt, "options": plan.options},
        "segments": [[s.start, s.stop, s.frames] for s in cut],
    }
    return Job(found, output_path, container, plan, copy, cut, scale, identity)


def run(
    predictor,
    job: Job,
    tile="auto",
    progress: Callable[[int, int], None] | None = None,
    batch: int | None = None,
) -> VideoSummary:
    """Upscale the job's unfinished segments, join them and put the output in place."""
    started = time.perf_counter()
    space = segments.Workspace(job.output, job.identity).open()
    todo = [s for s in job.segments if not space.done(s)]
    summary = VideoSummary(job.source.path, job.output, segments=len(job.segments), dropped=job.copy.dropped)
    summary.resumed_segments = len(job.segments) - len(todo)
    summary.damage = job.source.damage
    total = job.source.frames
    done = total - sum(s.frames for s in todo)
    if progress is not None:
        progress(done, total)

    def counted(count: int) -> None:
        nonlocal done
        done += count
        summary.upscaled += count
        if progress is not None:
            progress(min(done, total), total)

    if batch is None:
        batch = CPU_BATCH if predictor.device == "cpu" else BATCH
    encode_segments(predictor, job, todo, space, tile, batch, counted, summary.lost)
    paths = [space.segment_path(s) for s in job.segments]
    from .join import join

    join(job.source, paths, job.copy, job.output, job.container, job.plan)
    space.remove()
    summary.frames = total - sum(_count(text) for text in summary.lost)
    summary.seconds = time.perf_counter() - started
    return summary


def _count(text: str) -> int:
    return int(text.split(" ", 1)[0])


def engine_plan(predictor, size: tuple[int, int], scale: int, tile, batch: int):
    """The plan for the job's frames, and how many engine calls run at once.

    Every frame has the source's size, so one plan serves the job: frames whole, as many per engine
    call as the memory budget holds (up to ``batch``, with a dynamic batch axis), or each tiled
    exactly as an image of its size is. A Predictor opened for N calls at once
    (``predictor.concurrent_calls``, :mod:`sdk.video.engine`) runs N one-frame calls at once, each
    planned within 1/N of the memory budget (the rest is ``held`` for the others), so that together
    they stay within it: whole frames where they fit, else tiled.
    """
    calls = max(1, int(getattr(predictor, "concurrent_calls", 1)))
    if calls == 1:
        return predictor.plan(size, scale, tile, max_batch=batch), 1
    own = predictor.memory_budget
    budget = memory.budget(None if own is None else memory.parse_size(own), predictor.device)
    return predictor.plan(size, scale, tile, max_batch=1, held=budget - budget // calls), calls


def encode_segments(predictor, job: Job, todo, space, tile, batch, counted, lost: list[str]) -> None:
    """Run ``todo`` segments through the pipeline into the workspace's segment files."""
    source_ = job.source

    def on_lost(pts: list[int]) -> None:
        where = ", ".join(libav.timestamp(p, source_.time_base) for p in pts[:5])
        lost.append(f"{len(pts)} damaged frame(s) left out at {where}{' ...' if len(pts) > 5 else ''}")
        log.warning("%s: %s", source_.path, lost[-1])

    def items():
        for segment in todo:
            yield _Start(segment)
            for decoded in frames.decode(source_, segment.start, segment.stop, on_lost):
                yield _Picture(decoded.pts, frames.duration(source_, decoded), decoded)
            yield _End(segment)

    def to_rgb(batch_):
        return [_Picture(p.pts, p.duration, frames.to_pixels(p.data, source_)) for p in batch_]

    scale = job.scale
    plan, calls = engine_plan(predictor, (source_.height, source_.width), scale, tile, batch)
    per_call = 1 if plan.tiled else plan.batch

    def engine(batch_):
        results = predictor.run_plan(np.stack([p.data for p in batch_]), scale, plan)
        return [_Picture(p.pts, p.duration, r) for p, r in zip(batch_, results)]

    def to_yuv(batch_):
        out = []
        for p in batch_:
            frame = frames.to_frame(p.data, p.pts, job.plan, source_)
            if p.duration:
                frame.duration = p.duration
            out.append(_Picture(p.pts, p.duration, frame))
        return out

    pipeline = stages.Pipeline(
        items(),
        [
            stages.Stage("rgb", to_rgb),
            stages.Stage("engine", engine, batch=per_call, workers=calls),
            stages.Stage("yuv", to_yuv),
        ],
    )
    with pipeline, _SegmentWriter(job, space) as writer:
        for item in pipeline:
            if isinstance(item, _Start):
                writer.begin(item.segment)
            elif isinstance(item, _End):
                writer.end()
            else:
                writer.write(item.data)
                counted(1)


@dataclass
class _Picture:
    pts: int
    duration: int | None
    data: object


@dataclass
class _Start(stages.Marker):
    segment: segments.Segment


@dataclass
class _End(stages.Marker):
    segment: segments.Segment


class _SegmentWriter:
    """Encodes frames into the current segment's file; a finished segment is renamed into place."""

    def __init__(self, job: Job, space: segments.Workspace):
        self.job, self.space = job, space
        # The current segment's, between begin and end.
        self.encoder: Any = None
        self.packets: Any = None
        self.segment: Any = None

    def begin(self, segment) -> None:
        # Set before the part file exists: a signal that lands while it is being created (inside
        # PacketWriter, before self.packets is set) still finds the segment to clean up.
        self.segment = segment
        self.encoder = encoder.open_encoder(self.job.plan, self.job.source)
        self.packets = PacketWriter(self.space.part_path(segment), self.job.source.time_base, self.encoder.extradata)

    def write(self, frame) -> None:
        self.packets.write(self.encoder.encode(frame))

    def end(self) -> None:
        self.packets.write(self.encoder.encode(None))
        self.packets.close()
        self.packets = self.encoder = None
        self.space.finish(self.segment)
        self.segment = None

    def __enter__(self) -> _SegmentWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.packets is not None:
            self.packets.handle.close()
        if self.segment is not None:  # stopped midway (or while its file was being opened): the part file goes
            self.space.part_path(self.segment).unlink(missing_ok=True)
