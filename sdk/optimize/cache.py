"""The optimised models on disk: keyed on content, written atomically, shared by every process.

A rewritten model depends on the model's bytes, the factor baked in (runtime-scale models) and the
pass's version - never on the file name, so a retrained model never reuses a stale rewrite. The
directory stays within sdk.disk_cache's bound (bytes and entries, least recently used evicted, safe
across processes), so factors a client invents cannot fill the disk. Layout under the cache directory::

    optimized/<digest>.onnx   the rewritten model (absent when the pass changed nothing)
    optimized/<digest>.json   what was done, and whether anything changed (read back by the code)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..disk_cache import Bound, touch, trim
from ..files import atomic_write

ENV_VAR = "SDK_CACHE_DIR"


def cache_root() -> Path:
    """``$SDK_CACHE_DIR`` when set, else the user cache directory of deploy-sdk."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("deploy-sdk", appauthor=False))


@dataclass(frozen=True)
class OptimizeKey:
    """Everything a rewritten model depends on."""

    model_sha256: str
    factor: tuple[tuple[str, tuple[float, ...]], ...] | None  # the shape inputs' values baked in, by name; or None
    pass_version: int

    @property
    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class OptimizedCache:
    def __init__(self, root: Path | None = None, bound: Bound | None = None):
        self.root = (Path(root) if root is not None else cache_root()) / "optimized"
        self.bound = bound or Bound.from_environment()

    def paths(self, key: OptimizeKey) -> tuple[Path, Path]:
        return self.root / f"{key.digest}.onnx", self.root / f"{key.digest}.json"

    def get(self, key: OptimizeKey) -> dict | None:
        """The record of an earlier run of the pass, or None (also for a damaged or partial entry)."""
        model_path, record_path = self.paths(key)
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return None
        # JSON has lists where the key has tuples: compare the two as JSON.
        if record.get("key") != json.loads(json.dumps(asdict(key))) or (
            record.get("changed") and not model_path.is_file()
        ):
            return None
        touch(record_path, model_path)  # recently used: the last to be evicted
        return record

    def put(self, key: OptimizeKey, proto, rewrites: list) -> dict:
        """Store a pass result: the model first, then the record that makes it visible."""
        from .graph import save

        model_path, record_path = self.paths(key)
        changed = any(r.done for r in rewrites)
        if changed:
            self.root.mkdir(parents=True, exist_ok=True)
            if proto.ByteSize() < (1 << 30):
                atomic_write(model_path, proto.SerializeToString())
            else:  # protobuf's 2 GiB limit: weights beside it (written once per key, rarely contended)
                save(proto, model_path)
        record = {
            "key": asdict(key),
            "changed": changed,
            "rewrites": [str(r) for r in rewrites],
            "done": [r.done for r in rewrites],
        }
        atomic_write(record_path, json.dumps(record, indent=2) + "\n")
        trim(self.root, self.bound, keep=key.digest)
        return record
