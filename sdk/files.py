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


@functools.cache
def _umask() -> int:
    # The only portable way to read the umask is to set it; done once, before any thread needs it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
