"""The on-disk caches (optimised models, TensorRT engines) stay within their bound in bytes and
entries, evict the least recently used, and stay whole when several processes write at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sdk.disk_cache import Bound, entry_of, trim


def make_entry(directory: Path, stem: str, size: int, age: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.onnx").write_bytes(b"m" * size)
    (directory / f"{stem}.json").write_text("{}")
    when = time.time() - age
    for path in directory.glob(f"{stem}.*"):
        os.utime(path, (when, when))


def stems(directory: Path) -> set[str]:
    return {s for s in (entry_of(p.name) for p in directory.iterdir()) if s}


def test_trim_evicts_the_least_recently_used_by_entries_and_bytes(tmp_path):
    for i, age in enumerate([50, 40, 30, 20, 10]):
        make_entry(tmp_path, f"e{i}", 100, age)
    (tmp_path / "e0.lock").write_text("")
    (tmp_path / ".e9.onnx.abc.part").write_bytes(b"x" * 10_000)  # being written: not an entry
    assert trim(tmp_path, Bound(max_bytes=10**6, max_entries=3)) == ["e0", "e1"]
    assert stems(tmp_path) == {"e2", "e3", "e4"}
    assert (tmp_path / "e0.lock").exists() and (tmp_path / ".e9.onnx.abc.part").exists()
    # 2 bytes of record each: 3 x 102 bytes is over 250, so the oldest goes, never the one kept.
    assert trim(tmp_path, Bound(max_bytes=250, max_entries=10), keep="e2") == ["e3"]
    assert stems(tmp_path) == {"e2", "e4"}


def test_a_hit_makes_an_entry_recently_used(tmp_path, monkeypatch):
    from onnx import helper

    from sdk.optimize.cache import OptimizedCache, OptimizeKey
    from sdk.optimize.resize import Rewrite

    monkeypatch.setenv("SDK_CACHE_MAX_ENTRIES", "2")
    cache = OptimizedCache(tmp_path)
    proto = helper.make_model(helper.make_graph([], "g", [], []))
    keys = [OptimizeKey("sha", (("factor", (1.0, 1.0, float(s), float(s))),), 1) for s in (2, 3, 4)]
    cache.put(keys[0], proto, [Rewrite("r", True, "done")])
    time.sleep(0.02)
    cache.put(keys[1], proto, [Rewrite("r", True, "done")])
    time.sleep(0.02)
    assert cache.get(keys[0]) is not None  # a hit: keys[0] is now the most recently used
    time.sleep(0.02)
    cache.put(keys[2], proto, [Rewrite("r", True, "done")])
    assert cache.get(keys[1]) is None and cache.get(keys[0]) is not None and cache.get(keys[2]) is not None
    assert len(stems(cache.root)) == 2


def test_the_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SDK_CACHE_MAX_BYTES", "1GiB")
    monkeypatch.setenv("SDK_CACHE_MAX_ENTRIES", "7")
    assert Bound.from_environment() == Bound(2**30, 7)
    monkeypatch.setenv("SDK_CACHE_MAX_ENTRIES", "lots")
    with pytest.raises(Exception, match="SDK_CACHE_MAX_ENTRIES"):
        Bound.from_environment()
    monkeypatch.setenv("SDK_CACHE_MAX_ENTRIES", "3")
    monkeypatch.setenv("SDK_CACHE_MAX_BYTES", "big")
    with pytest.raises(Exception, match="SDK_CACHE_MAX_BYTES"):
        Bound.from_environment()


def test_engine_cache_is_bounded_too(tmp_path, monkeypatch):
    from backends.tensorrt.cache import EngineCache, EngineKey

    monkeypatch.setenv("SDK_CACHE_MAX_ENTRIES", "2")
    cache = EngineCache(tmp_path)
    keys = [EngineKey(f"sha{i}", (), "p", "fp16", "10.0", "gpu", (8, 9)) for i in range(3)]
    for key in keys:
        cache.store(key, b"engine" * 100)
        time.sleep(0.02)
    assert cache.load(keys[0]) is None and cache.load(keys[2]) == b"engine" * 100
    assert len(stems(cache.root / "engines")) == 2


def _writer(root: str, worker: int) -> None:
    from onnx import helper

    from sdk.optimize.cache import OptimizedCache, OptimizeKey
    from sdk.optimize.resize import Rewrite

    os.environ["SDK_CACHE_MAX_ENTRIES"] = "5"
    cache = OptimizedCache(Path(root))
    proto = helper.make_model(helper.make_graph([], "g", [], []))
    for i in range(12):
        key = OptimizeKey(f"w{worker}-{i}", None, 1)
        cache.put(key, proto, [Rewrite("r", True, "done")])
        cache.get(key)


def test_processes_writing_at_once_leave_a_bounded_cache_of_whole_entries(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    root = tmp_path / "optimized"
    assert len(stems(root)) <= 5
    for record in root.glob("*.json"):
        assert json.loads(record.read_text())["changed"] and record.with_suffix(".onnx").is_file()
    assert not list(root.glob(".*.part"))


def test_a_flood_of_factors_leaves_the_cache_bounded(tmp_path, monkeypatch, runtime_model):
    from sdk import Predictor

    monkeypatch.setenv("SDK_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SDK_CACHE_MAX_ENTRIES", "3")
    with Predictor(runtime_model, backend="ort-cpu") as p:
        for s in (2, 3, 4, 5, 6, 2.5, 3.25):
            feeds = {"input": np.full((1, 3, 4, 4), 9, np.float32), "factor": np.array([1, 1, s, s], np.float32)}
            p.run(feeds)
    assert len(stems(tmp_path / "optimized")) <= 3
