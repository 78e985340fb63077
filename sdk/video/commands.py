"""``sdk upscale`` for videos: which inputs are videos, their options, and the run with its progress bar.

The upscale command calls :func:`find_videos` first; videos go through :func:`upscale_videos`, the
rest through the image job as before. Nothing here imports PyAV until a video is found.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from ..errors import InputError, SDKError
from ..files import check_outputs, resolved_output
from ..images import IMAGE_SUFFIXES

# Suffixes taken for videos without asking FFmpeg; any other non-image file is probed.
VIDEO_SUFFIXES = (".mkv", ".mp4", ".mov", ".webm", ".m4v", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("video (when an input is a video; see docs/video.md)")
    group.add_argument(
        "--codec", default=None, help="video encoder (default: libx264 for 8-bit, libx265 for 10-bit, VP9 for .webm)"
    )
    group.add_argument("--crf", type=float, default=None, help="constant quality (default: x264 18, x265 20, VP9 24)")
    group.add_argument("--preset", default=None, help="encoder speed preset, e.g. slow or veryfast (x264/x265)")
    group.add_argument(
        "--pix-fmt", default=None, help="output pixel format (default: the source's depth and chroma, e.g. yuv420p10le)"
    )
    group.add_argument(
        "--encoder-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the encoder (repeatable), e.g. x265-params=aq-mode=3 or tune=animation",
    )
    group.add_argument(
        "--lossless", action="store_true", help="the encoder's lossless mode (x264, x265, VP9); or --codec ffv1"
    )
    group.add_argument(
        "--drop-streams",
        action="store_true",
        help="leave out streams the output container cannot hold (by default they stop the job before it starts)",
    )
    group.add_argument(
        "--segment-seconds",
        type=float,
        default=None,
        metavar="S",
        help="cut the work at keyframes at least S seconds apart: what a resumed run keeps (default 20)",
    )


def is_video_file(path: Path) -> bool:
    """A video by content; files with a video suffix count as videos even without PyAV (which then
    gets asked for and named)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return False
    try:
        from .source import is_video
    except ImportError:  # pragma: no cover - sdk.video imports nothing heavy at module level
        return suffix in VIDEO_SUFFIXES
    try:
        if is_video(path):
            return True
    except InputError:  # PyAV is not installed
        return suffix in VIDEO_SUFFIXES
    # Not a video by content. Named like one, it is still the user's video unless it is really a
    # picture: the video job then says what FFmpeg found wrong, not that Pillow cannot read it.
    return suffix in VIDEO_SUFFIXES and not _is_picture(path)


def _is_picture(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError):
        return False


def find_videos(inputs) -> tuple[list[Path], list[str]]:
    """(the videos among the inputs and inside folders, the inputs left for the image job)."""
    videos: list[Path] = []
    rest: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = [p for p in sorted(path.iterdir()) if p.is_file() and is_video_file(p)]
            videos += found
            if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()) or not found:
                rest.append(text)
        elif path.is_file() and is_video_file(path):
            videos.append(path)
        else:
            rest.append(text)
    return videos, rest


def plan_outputs(videos: list[Path], output: Path, alone: bool) -> list[tuple[Path, Path]]:
    """One video alone may name an output file; otherwise each keeps its name inside the folder OUT."""
    from .encoder import CONTAINERS

    if alone and len(videos) == 1 and output.suffix.lower() in CONTAINERS and not output.is_dir():
        check_outputs([(videos[0], output)])
        return [(videos[0], output)]
    if output.exists() and not output.is_dir():
        raise SDKError(f"output {output} is a file: pass a folder for several inputs, or a video name for one video")
    # A video whose suffix names no container the SDK writes (found by its content) becomes Matroska,
    # which holds any stream.
    pairs = [(v, output / (v.name if v.suffix.lower() in CONTAINERS else f"{v.name}.mkv")) for v in videos]
    check_outputs(pairs)  # no looping link, no input overwritten, a folder that can be written
    if len({resolved_output(t) for _, t in pairs}) != len(pairs):
        raise SDKError(
            "two videos have the same file name and would write one output; upscale them into separate folders"
        )
    return pairs


def settings_from(args):
    from .encoder import EncoderSettings

    options = {}
    for text in args.encoder_option:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise InputError(f"--encoder-option {text!r}: write it as KEY=VALUE, e.g. tune=animation")
        options[key.strip()] = value
    return EncoderSettings(args.codec, args.crf, args.preset, args.pix_fmt, options, args.lossless)


def upscale_videos(args, predictor, pairs: list[tuple[Path, Path]], scale: int) -> int:
    """Upscale each (video, output) with the CLI's options; prints a summary line per video. Exit code:
    0 done, 1 some failed, 130/143 interrupted (run the same command again to go on)."""
    from ..jobs import Interrupted
    from ..tiling import parse_tile
    from . import job

    tile = parse_tile(args.tile, "--tile ")
    settings = settings_from(args)
    seconds = args.segment_seconds if args.segment_seconds is not None else job.DEFAULT_SEGMENT_SECONDS
    # Everything is checked before any video starts: a bad option or stream fails the whole command.
    planned = []
    for video, output in pairs:
        if output.exists() and not args.force:
            print(f"sdk: skipped {output}: it exists (pass --force to redo it)", file=sys.stderr)
            continue
        planned.append(job.prepare(predictor, video, output, scale, settings, args.drop_streams, seconds))
    failures = 0
    for item in planned:
        with _Bar(item.source.path.name) as bar:
            try:
                summary = job.run(predictor, item, tile=tile, progress=bar.update)
            except Interrupted as exc:
                print(
                    f"sdk: upscaled {bar.done} of {bar.total} frame(s) of {item.source.path} on {predictor.backend}; "
                    f"interrupted by {signal.Signals(exc.signum).name}: run the same command again to go on",
                    file=sys.stderr,
                )
                return 128 + exc.signum
            except SDKError as exc:
                print(f"sdk: failed {item.source.path}: {exc}", file=sys.stderr)
                failures += 1
                continue
        print(f"sdk: {describe(summary, scale, predictor)}", file=sys.stderr)
        for line in summary.lost:
            print(f"sdk: warning: {item.source.path}: {line}", file=sys.stderr)
    return 1 if failures else 0


def describe(summary, scale: int, predictor) -> str:
    resumed = f", {summary.resumed_segments} segment(s) kept from an earlier run" if summary.resumed_segments else ""
    fps = summary.upscaled / summary.seconds if summary.seconds else 0.0
    return (
        f"upscaled {summary.source} x{scale} -> {summary.output}: {summary.frames} frame(s), "
        f"{summary.upscaled} this run at {fps:.2f} fps on {predictor.backend} on {predictor.device}{resumed}"
    )


class _Bar:
    """Frames done of the total, frames per second and the time left, on stderr.

    The rate and the time left are this run's own: frames an interrupted run finished (a resumed job
    starts with them done) count in "done" but not in the rate, which rich's own speed estimate would
    take them for.
    """

    def __init__(self, name: str, console=None, clock=time.perf_counter):
        self.name = name
        self.done = self.total = 0
        self._console, self._clock = console, clock
        self._first: int | None = None  # frames already done when the first update came (a resumed job)
        self._started = clock()

    def __enter__(self) -> _Bar:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("frames{task.fields[rate]}"),
            console=self._console or Console(stderr=True),
        )
        self._bar.start()
        self._task = self._bar.add_task(self.name, total=None, rate="")
        return self

    def update(self, done: int, total: int) -> None:
        if self._first is None:
            self._first, self._started = done, self._clock()
        self.done, self.total = done, total
        self._bar.update(self._task, completed=done, total=total, rate=self.rate_text())

    def rate_text(self) -> str:
        """ ", 2.50 fps, 0:01:04 left" once a frame of this run is done (empty before)."""
        elapsed = self._clock() - self._started
        finished = self.done - (self._first or 0)
        if finished <= 0 or elapsed <= 0:
            return ""
        rate = finished / elapsed
        left = round((self.total - self.done) / rate)
        return f", {rate:.2f} fps, {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"

    def __exit__(self, *exc_info) -> None:
        self._bar.stop()
