"""Folder jobs: many image files through one Predictor, resumable and interruptible.

A job is a list of (source, target) pairs. Every output is written atomically (sdk.files), so an
output that exists is complete: a re-run skips it, and after ``kill -9`` at most one temporary
``.NAME.*.part`` file is left, which the next run of the same job removes. SIGINT and SIGTERM stop
the job between two steps, with the temporary file of the image in progress removed.

These are plain functions so that other runners (the Ray scale-out) plan, skip and clean up the
same way the ``sdk upscale`` command does.
"""

from __future__ import annotations

import contextlib
import glob
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .errors import SDKError
from .files import check_outputs, resolved_output
from .images import IMAGE_SUFFIXES, Decoded, check_writable_size, decode, save_atomic

Pair = tuple[Path, Path]


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the images directly inside each folder, in name order."""
    found = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise SDKError(f"input {str(text)!r} does not exist")
    if not found:
        shown = ", ".join(str(i) for i in inputs)
        raise SDKError(f"no images found in {shown} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return found


def plan_outputs(images: Sequence[Path], output: Path) -> list[Pair]:
    """Where each image goes. One input may name an output file; otherwise OUT is a folder."""
    output = Path(output)
    single_file = len(images) == 1 and output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()
    if not single_file and output.exists() and not output.is_dir():
        raise SDKError(
            f"output {output} is a file: pass a folder for the results "
            "(or, for one input image, a new file name ending in an image suffix)"
        )
    pairs = [(images[0], output)] if single_file else [(image, output / image.name) for image in images]
    check_outputs(pairs)  # no looping link, no input overwritten, a folder that can be written
    targets = [resolved_output(target) for _, target in pairs]
    if len(set(targets)) != len(targets):
        raise SDKError(
            "two inputs have the same file name and would write one output; upscale them into separate folders"
        )
    return pairs


def part_files(target: Path) -> list[Path]:
    """Temporary files that sdk.files.atomic_file left for ``target`` (a killed run's)."""
    target = Path(target)
    return [Path(p) for p in glob.glob(str(target.parent / f".{glob.escape(target.name)}.*.part"))]


def remove_stale_parts(pairs: Sequence[Pair]) -> int:
    """Delete the temporary files earlier, killed runs left for these targets; how many."""
    removed = 0
    for _, target in pairs:
        for part in part_files(target):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
                removed += 1
    return removed


def split_existing(pairs: Sequence[Pair], force: bool = False) -> tuple[list[Pair], list[Pair]]:
    """(to do, already done). Outputs are written atomically, so one that exists is complete."""
    if force:
        return list(pairs), []
    todo: list[Pair] = []
    done: list[Pair] = []
    for pair in pairs:
        (done if pair[1].exists() else todo).append(pair)
    return todo, done


@dataclass
class Summary:
    """What a job did; ``interrupted`` is the signal number that stopped it, if one did."""

    planned: int
    skipped: int = 0
    written: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: int | None = None
    removed_parts: int = 0

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        return 1 if self.failures else 0

    def lines(self, scale: int, where: str, output: Path | str) -> list[str]:
        done = self.planned - self.skipped
        head = f"upscaled {self.written} of {done} image(s) x{scale} on {where} -> {output}"
        if self.interrupted is not None:
            head += f"; interrupted by {signal.Signals(self.interrupted).name}: run the same command again to go on"
        lines = [head]
        if self.skipped:
            lines.append(f"skipped {self.skipped} existing output(s) (pass --force to redo them)")
        if self.removed_parts:
            lines.append(f"removed {self.removed_parts} temporary file(s) left by an interrupted run")
        lines += [f"failed {source}: {message}" for source, message in self.failures]
        return lines


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; a KeyboardInterrupt, so ``except Exception`` never swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` in the main thread while the block runs, so that
    the ``with`` blocks being unwound (temporary files, engines) clean up as for an exception."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def upscale_file(predictor, image: Decoded, target: Path, scale: int, tile="auto", progress=None) -> None:
    """Upscale one decoded picture and write it to ``target`` with its profile, EXIF and alpha.

    Everything that can refuse the picture (the output format's largest side, the result's memory,
    the tiles) is decided before the engine runs."""
    height, width = image.pixels.shape[:2]
    check_writable_size(target, height * scale, width * scale)
    plan = predictor.plan((height, width), scale, tile)
    result = predictor.run_plan(image.pixels[None], scale, plan, progress=progress)[0]
    save_atomic(result, target, source=image)


def run(
    predictor,
    pairs: Sequence[Pair],
    scale: int,
    tile="auto",
    force: bool = False,
    orient: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_image: Callable[[Path], None] | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> Summary:
    """Upscale every pair whose output does not exist yet (all of them with ``force``).

    The next image is decoded in a background thread while the current one runs, so the engine does
    not wait on the disk. A picture that cannot be read, upscaled or written is recorded in the
    summary and the others go on. An :class:`Interrupted` (see :func:`stop_on_signals`) ends the job
    with the summary so far; the output in progress is not left behind.
    """
    summary = Summary(planned=len(pairs), removed_parts=remove_stale_parts(pairs))
    todo, done = split_existing(pairs, force)
    summary.skipped = len(done)
    if on_start is not None:
        on_start(len(todo))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdk-decode")

    def read(path: Path) -> Future:
        return executor.submit(decode, path, orient)

    try:
        upcoming = read(todo[0][0]) if todo else None
        for index, (source, target) in enumerate(todo):
            current, upcoming = upcoming, (read(todo[index + 1][0]) if index + 1 < len(todo) else None)
            try:
                decoded = cast(Future, current).result()  # each image to do had its read queued
                upscale_file(predictor, decoded, target, scale, tile, progress=on_tiles)
                summary.written += 1
            except (SDKError, OSError) as exc:  # one bad image or failed write must not cost the others
                summary.failures.append((source, str(exc)))
            if on_image is not None:
                on_image(source)
    except Interrupted as exc:
        summary.interrupted = exc.signum
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return summary


class JobProgress:
    """A rich display for a terminal: one bar for the images, one for the tiles of the current image
    when it has several. Nothing for a single image without tiles."""

    def __init__(self, total: int):
        self.total = total
        self._bar: Any = None  # a rich Progress, once entered
        self._tiles: Any = None

    def __enter__(self) -> JobProgress:
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=False)
        self._bar.start()
        self._images = self._bar.add_task("images", total=self.total, visible=self.total > 1)
        return self

    def start(self, todo: int) -> None:
        self._bar.update(self._images, total=todo, visible=todo > 1)

    def image(self, source: Path) -> None:
        self._bar.update(self._images, advance=1, description=source.name)
        if self._tiles is not None:
            self._bar.remove_task(self._tiles)
            self._tiles = None

    def tiles(self, done: int, total: int) -> None:
        if total < 2:
            return
        if self._tiles is None:
            self._tiles = self._bar.add_task("tiles", total=total)
        self._bar.update(self._tiles, completed=done, total=total)

    def __exit__(self, *exc_info) -> None:
        self._bar.stop()
