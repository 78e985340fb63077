"""Cutting a video's work into segments at keyframes, and the hidden folder that makes a job resumable.

Each segment is the frames from one source keyframe up to a later one, encoded into a file of its
own. The cut depends on the source alone, so a resumed run, an uninterrupted one and a Ray job cut
alike and join into the same frames. A finished segment is renamed into place whole (a kill leaves a
``.part`` file, never a short segment), so one that exists is done and is never redone.

The folder ``.<output name>.sdk-video`` beside the output keeps the segments and ``job.json``, the
job's identity (source, model, scale, encoder): a run with anything else changed starts afresh.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write
from .source import VideoSource

SUFFIX = ".sdk-video"


@dataclass(frozen=True)
class Segment:
    """Frames with start <= pts < stop (None: from the first / to the last)."""

    index: int
    start: int | None
    stop: int | None
    frames: int


def split(source: VideoSource, seconds: float) -> list[Segment]:
    """Segments of at least ``seconds`` each (the last may be shorter), cut only at keyframes."""
    pts = source.pts
    step = max(0.0, float(seconds)) / source.time_base
    cuts: list[int | None] = [None]  # None: from the start
    last = pts[0]
    for key in source.keyframes:
        if key > pts[0] and key - last >= step:
            cuts.append(key)
            last = key
    segments = []
    for index, start in enumerate(cuts):
        stop = cuts[index + 1] if index + 1 < len(cuts) else None
        first = 0 if start is None else bisect.bisect_left(pts, start)
        end = len(pts) if stop is None else bisect.bisect_left(pts, stop)
        segments.append(Segment(index, start, stop, end - first))
    return segments


def work_folder(output: Path) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}{SUFFIX}"


class Workspace:
    """The hidden folder of one job: its identity, and which segments are finished."""

    def __init__(self, output: Path, identity: dict):
        self.folder = work_folder(output)
        self.identity = json.loads(json.dumps(identity))  # as it reads back from job.json (tuples are lists)
        self.restarted = False  # an earlier job's work was thrown away

    def open(self) -> Workspace:
        manifest = self.folder / "job.json"
        if self.folder.exists():
            try:
                same = json.loads(manifest.read_text()) == self.identity
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.restarted = True
        self.folder.mkdir(parents=True, exist_ok=True)
        if not manifest.exists():
            atomic_write(manifest, json.dumps(self.identity, indent=1, sort_keys=True))
        for part in self.folder.glob(".*.part"):  # a killed run's segment in progress
            with contextlib.suppress(OSError):
                part.unlink()
        return self

    def segment_path(self, segment: Segment) -> Path:
        return self.folder / f"{segment.index:05d}.packets"

    def done(self, segment: Segment) -> bool:
        return self.segment_path(segment).exists()

    def part_path(self, segment: Segment) -> Path:
        return self.folder / f".{segment.index:05d}.{os.getpid()}.part"

    def finish(self, segment: Segment) -> None:
        os.replace(self.part_path(segment), self.segment_path(segment))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
