"""The bound on the SDK's caches on disk - optimised models and TensorRT engines - one rule for both.

A cache directory holds entries: the files that share a stem, the key's digest (``<digest>.onnx``
and ``<digest>.json``; ``<digest>.engine`` and ``<digest>.json``). After each write the writer trims
the directory: while it holds more than ``max_entries`` entries or ``max_bytes`` bytes, the least
recently used entry goes (its last use is the newest modification time of its files, and a hit
touches them), never the one just written.

Several processes share a directory safely: files appear by atomic rename (sdk.files), trimming
holds the directory's lock (filelock) so two writers never trim at once, and an entry's record goes
before its payload, so a reader finds a whole entry or a miss. Build locks (``.lock``) and files
being written (``.<name>.<random>.part``) are not entries; a build lock is an empty file and stays.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

ENV_BYTES = "SDK_CACHE_MAX_BYTES"
ENV_ENTRIES = "SDK_CACHE_MAX_ENTRIES"
# A rewritten SRCNN is a few hundred kilobytes and a TensorRT engine tens of megabytes; 2 GiB and
# 64 entries keep every factor and shape a real deployment uses, and nothing a client invents.
DEFAULT_BYTES = 2 * 2**30
DEFAULT_ENTRIES = 64
RECORD = ".json"  # the file whose presence makes an entry visible: deleted first
_LOCK_WAIT_S = 60.0


@dataclass(frozen=True)
class Bound:
    max_bytes: int = DEFAULT_BYTES
    max_entries: int = DEFAULT_ENTRIES

    @classmethod
    def from_environment(cls) -> Bound:
        """The bound from $SDK_CACHE_MAX_BYTES (e.g. "2GiB") and $SDK_CACHE_MAX_ENTRIES, else the defaults."""
        from .memory import parse_size

        size, count = os.environ.get(ENV_BYTES), os.environ.get(ENV_ENTRIES)
        try:
            max_bytes = parse_size(size) if size else DEFAULT_BYTES
        except InputError as exc:
            raise InputError(f"${ENV_BYTES}: {exc}") from None
        if not count:
            return cls(max_bytes, DEFAULT_ENTRIES)
        if not count.strip().isdigit() or int(count) < 1:
            raise InputError(f"${ENV_ENTRIES}={count!r} must be a whole number of entries, 1 or more (e.g. 64)")
        return cls(max_bytes, int(count))


def touch(*paths: Path) -> None:
    """Mark an entry used now (its files' modification time), so trimming keeps it longer."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.utime(path)


def entry_of(name: str) -> str | None:
    """The entry a file of the directory belongs to (its stem), or None for locks and partial files."""
    if name.startswith(".") or name.endswith(".lock"):
        return None
    return name.split(".", 1)[0]


def trim(directory: Path, bound: Bound, keep: str | None = None) -> list[str]:
    """Delete least recently used entries of ``directory`` until it is within ``bound``; never ``keep``.
    Returns the entries deleted."""
    from filelock import FileLock, Timeout

    directory = Path(directory)
    try:
        with FileLock(str(directory / ".trim.lock"), timeout=_LOCK_WAIT_S):
            return _trim(directory, bound, keep)
    except Timeout:  # another process trims; the cache is over its bound only until one of us is done
        log.warning(
            "cache %s: another process has held its trim lock for %.0f s; not trimming", directory, _LOCK_WAIT_S
        )
        return []


def _trim(directory: Path, bound: Bound, keep: str | None) -> list[str]:
    entries: dict[str, list] = {}  # stem -> [bytes, last use, files]
    try:
        scan = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for item in scan:
        stem = entry_of(item.name)
        if stem is None:
            continue
        try:
            info = item.stat()
        except FileNotFoundError:  # deleted meanwhile by a reader that found it damaged
            continue
        entry = entries.setdefault(stem, [0, 0.0, []])
        entry[0] += info.st_size
        entry[1] = max(entry[1], info.st_mtime)
        entry[2].append(Path(item.path))
    total = sum(e[0] for e in entries.values())
    count = len(entries)
    deleted = []
    for stem, (size, _, files) in sorted(entries.items(), key=lambda kv: kv[1][1]):
        if count <= bound.max_entries and total <= bound.max_bytes:
            break
        if stem == keep:
            continue
        for path in sorted(files, key=lambda p: p.suffix != RECORD):  # the record first: then a miss
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        count -= 1
        total -= size
        deleted.append(stem)
    if deleted:
        log.info("cache %s: removed %d least recently used entries to stay within %s", directory, len(deleted), bound)
    return deleted
