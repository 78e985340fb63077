"""Writing files so that nothing half-written is ever left behind.

Every file the SDK writes (upscaled images, exported models, trained weights, engine caches,
benchmark reports) goes through :func:`atomic_file`: the content goes to a temporary file in the
same folder, which replaces the target only once it is complete. A reader, or a crash, sees the old
file or the whole new one, never a part.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import SDKError


@functools.cache
def _umask() -> int:
    # The only portable way to read the umask is to set it; done once, before any thread needs it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def resolved_output(path: Path) -> Path:
    """``path`` resolved, or an SDKError when a symbolic link on the way loops."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:  # a loop: RuntimeError up to Python 3.12, OSError after
        raise SDKError(
            f"output {path} is a symbolic link that leads back to itself ({exc}); remove the link or choose another name"
        ) from None


def check_writable(folder: Path) -> None:
    """An SDKError unless files can be written in ``folder``: asked before any work, so that a bad
    output folder is found before hours of upscaling, not after. A folder still to be made is checked
    at its nearest existing parent (which must be a folder); nothing is created or left behind."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing, prefix=".sdk-write-check-"):
            pass
    except OSError as exc:
        raise SDKError(
            f"cannot write in the output folder {folder} ({exc.strerror or exc}); choose a folder you can write to"
        ) from None


def check_outputs(pairs) -> None:
    """The checks every (input, output) plan gets before any work: no output is a looping link or an
    input, and every output's folder can be written."""
    sources = {resolved_output(source) for source, _ in pairs}
    for _, target in pairs:
        if resolved_output(target) in sources:
            raise SDKError(f"output {target} would overwrite an input; choose another output folder")
    for folder in {Path(target).parent for _, target in pairs}:
        check_writable(folder)


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open ``path`` for writing; it appears, whole, only when the ``with`` block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` with :func:`atomic_file`."""
    with atomic_file(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
