"""The on-disk engine cache: what an engine is keyed on, and how it is stored safely.

An engine is only valid for the exact model content, specialisation, profile, precision, TensorRT
build and GPU it was built for, so the key hashes all of them - never the file name (ONNX Runtime's
TensorRT provider keys on the name, and a retrained model silently reuses a stale engine).

Each file is ``header + payload``; the header carries a magic number, the key's digest, the payload
length and its SHA-256, so a truncated, corrupted or misplaced file is detected before TensorRT sees
it. Files are written to a temporary name and renamed into place, under a per-key file lock, so two
processes never build the same engine at once and a reader never sees half a file. The engines
directory stays within sdk.disk_cache's bound (bytes and entries, least recently used evicted),
the rule the optimised-model cache follows too.

Layout under the cache directory::

    engines/<digest>.engine   header + serialized engine
    engines/<digest>.json     what the engine is (for people; never trusted by the code)
    engines/<digest>.lock     the build lock
    timing/<tensorrt>-<gpu>.cache   TensorRT's timing cache, shared by every build on that GPU
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sdk.disk_cache import Bound, touch, trim
from sdk.errors import SDKError
from sdk.files import atomic_write

log = logging.getLogger(__name__)

ENV_VAR = "SDK_CACHE_DIR"
MAGIC = b"SDKTRTE\x01"
# magic, key digest (32 bytes), payload length (u64), payload sha256 (32 bytes)
_HEADER = struct.Struct("<8s32sQ32s")
KEY_FORMAT = 1  # bump when what goes into an engine changes in a way the key fields do not show


def default_dir() -> Path:
    """``$SDK_CACHE_DIR/tensorrt`` when set, else the user cache directory of deploy-sdk."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser() / "tensorrt"
    import platformdirs

    return Path(platformdirs.user_cache_dir("deploy-sdk", appauthor=False)) / "tensorrt"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two equal keys may share one engine file."""

    model_sha256: str
    specialisation: tuple  # ((input name, shape, values), ...) baked into the graph
    profile: str  # Profile.canonical()
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    builder: tuple[tuple[str, str], ...] = field(default=())  # other settings that change the engine

    def fields(self) -> dict:
        record = asdict(self)
        record["format"] = KEY_FORMAT
        return record

    @property
    def digest(self) -> str:
        text = json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class CacheEntryError(SDKError):
    """An engine file that cannot be trusted (truncated, corrupt, or written for another key)."""


def wrap(key: EngineKey, payload: bytes) -> bytes:
    """Header + payload, as written to disk."""
    return _HEADER.pack(MAGIC, bytes.fromhex(key.digest), len(payload), hashlib.sha256(payload).digest()) + payload


def unwrap(key: EngineKey, blob: bytes) -> bytes:
    """The payload of a file written by :func:`wrap` for ``key``; CacheEntryError if it is not one."""
    if len(blob) < _HEADER.size:
        raise CacheEntryError(f"{len(blob)} bytes, shorter than the header: truncated")
    magic, digest, length, checksum = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CacheEntryError("not an engine file of this SDK (bad magic number)")
    if digest != bytes.fromhex(key.digest):
        raise CacheEntryError("written for a different engine key")
    payload = blob[_HEADER.size :]
    if len(payload) != length:
        raise CacheEntryError(f"payload is {len(payload)} bytes, the header says {length}: truncated")
    if hashlib.sha256(payload).digest() != checksum:
        raise CacheEntryError("payload checksum mismatch: corrupted")
    return payload


class EngineCache:
    """Engines on disk under ``root``, keyed by :class:`EngineKey`."""

    def __init__(self, root: Path | str | None = None, lock_timeout: float = 3600.0, bound: Bound | None = None):
        self.root = Path(root).expanduser() if root is not None else default_dir()
        self.lock_timeout = lock_timeout
        self.bound = bound or Bound.from_environment()

    def path(self, key: EngineKey) -> Path:
        return self.root / "engines" / f"{key.digest}.engine"

    def load(self, key: EngineKey) -> bytes | None:
        """The cached engine for ``key``; None when there is none or it was unusable (then it is deleted)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            payload = unwrap(key, blob)
        except CacheEntryError as exc:
            self.discard(key, str(exc))
            return None
        touch(path, path.with_suffix(".json"))  # recently used: the last to be evicted
        return payload

    def store(self, key: EngineKey, payload: bytes, description: dict | None = None) -> Path:
        path = self.path(key)
        atomic_write(path, wrap(key, payload))
        record = {
            "key": key.fields(),
            "digest": key.digest,
            "bytes": len(payload),
            "created": time.time(),
            **(description or {}),
        }
        atomic_write(path.with_suffix(".json"), json.dumps(record, indent=2, default=str).encode())
        trim(path.parent, self.bound, keep=key.digest)
        return path

    def discard(self, key: EngineKey, reason: str) -> None:
        """Delete an unusable engine, saying why; the next load misses and it is built again."""
        path = self.path(key)
        log.warning("TensorRT engine cache: %s is unusable (%s); deleting it, it will be rebuilt", path, reason)
        for stale in (path, path.with_suffix(".json")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    @contextlib.contextmanager
    def lock(self, key: EngineKey) -> Iterator[None]:
        """Hold the build lock of ``key``; says so when another process holds it and we wait."""
        with _file_lock(self.path(key).with_suffix(".lock"), self.lock_timeout, "build the same TensorRT engine"):
            yield

    def get_or_build(
        self, key: EngineKey, build: Callable[[], bytes], description: dict | None = None
    ) -> tuple[bytes, bool]:
        """The engine for ``key``, from disk or from ``build()``; and whether it was built now.

        Two processes asking at once: one builds, the other waits on the lock and then reads the file.
        """
        payload = self.load(key)
        if payload is not None:
            return payload, False
        with self.lock(key):
            payload = self.load(key)  # built by whoever held the lock before us
            if payload is not None:
                return payload, False
            payload = build()
            self.store(key, payload, description)
            return payload, True

    # -- the timing cache: TensorRT's record of which kernels won on this GPU, reused by later builds

    def timing_path(self, tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, int]) -> Path:
        slug = re.sub(
            r"[^A-Za-z0-9.]+", "-", f"{tensorrt_version}-{gpu_name}-sm{compute_capability[0]}{compute_capability[1]}"
        )
        return self.root / "timing" / f"{slug.strip('-')}.cache"

    def load_timing(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return b""

    def store_timing(self, path: Path, data: bytes) -> None:
        with _file_lock(path.with_suffix(".lock"), self.lock_timeout, "update the TensorRT timing cache"):
            atomic_write(path, data)


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another process is about to %s (lock %s); waiting for it", what, path)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise SDKError(
                f"waited {timeout:.0f} s for another process to {what} (lock {path}); let it finish, "
                "stop it, or pass a larger lock_timeout (the OS frees the lock when that process exits)"
            ) from None
    try:
        yield
    finally:
        lock.release()
