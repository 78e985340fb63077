"""A call's progress as its caller asked for it: a callable told (done, total), a bar, or nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class progress_bar:
    """``progress`` as the caller gave it: a callable, True for a rich bar on stderr, or nothing."""

    def __init__(self, progress: Callable[[int, int], object] | bool | None) -> None:
        self.progress = progress
        self.bar: Any = None

    def __enter__(self) -> Callable[[int, int], object] | None:
        if self.progress is True:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("tiles", total=None)
            return lambda done, total: self.bar.update(self.task, completed=done, total=total)
        return self.progress or None

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()
