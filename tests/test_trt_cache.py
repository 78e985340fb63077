"""The TensorRT engine cache: what the key depends on, atomic writes, detection and rebuild of
corrupt engines, and the lock that lets only one process build an engine. The engine payloads here
are stand-in bytes: the cache never looks inside them, TensorRT does (tested in test_trt_engine)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import threading
import time

import graphs
import numpy as np
import pytest

from deploy_sdk_backends.tensorrt import cache as cache_module
from deploy_sdk_backends.tensorrt.cache import CacheEntryError, EngineCache, EngineKey, unwrap, wrap
from deploy_sdk_backends.tensorrt.options import TrtOptions
from deploy_sdk_backends.tensorrt.profiles import derive
from deploy_sdk_backends.tensorrt.session import engine_key, specialisation_of
from sdk.devices import GPU
from sdk.model import Model

H100 = GPU(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 << 30)


def _key(
    model: Model,
    factor: float = 3.0,
    shape=(1, 3, 64, 64),
    precision: str = "fp32",
    version: str = "10.7.0",
    gpu: GPU = H100,
) -> EngineKey:
    feeds = {"input": np.zeros(shape, np.float32), "factor": np.array([1, 1, factor, factor], np.float32)}
    profile = derive([model.input("input")], {"input": shape})
    options = TrtOptions.parse({"precision": precision})
    return engine_key(model.sha256, specialisation_of(feeds, ["factor"]), profile, options, version, gpu)


@pytest.fixture
def model(tmp_path) -> Model:
    return Model(graphs.save(graphs.runtime_scale_model(seed=0), tmp_path / "srcnn3.onnx"))


# -- the key ----------------------------------------------------------------------------------------


def test_key_changes_with_the_model_bytes(model, tmp_path):
    retrained = Model(graphs.save(graphs.runtime_scale_model(seed=1), tmp_path / "retrained.onnx"))
    assert _key(model).digest != _key(retrained).digest


def test_key_ignores_the_file_name_and_folder(model, tmp_path):
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    copy = Model(shutil.copy(model.path, elsewhere / "renamed.onnx"))
    assert _key(copy).digest == _key(model).digest


@pytest.mark.parametrize(
    "change",
    [
        {"factor": 4.0},
        {"shape": (1, 3, 300, 300)},
        {"precision": "fp16"},
        {"version": "10.8.0"},
        {"version": "11.0.0"},
        {"gpu": GPU(0, "NVIDIA A100-SXM4-80GB", (8, 0), 80 << 30)},
        {"gpu": GPU(0, "NVIDIA H100 80GB HBM3", (9, 1), 80 << 30)},
    ],
)
def test_key_changes_with_factor_profile_precision_versions_and_gpu(model, change):
    assert _key(model, **change).digest != _key(model).digest


def test_key_changes_with_builder_settings(model):
    base = _key(model)
    options = TrtOptions.parse({"optimization_level": 5})
    other = engine_key(
        model.sha256,
        base.specialisation,
        derive([model.input("input")], {"input": (1, 3, 64, 64)}),
        options,
        "10.7.0",
        H100,
    )
    assert other.digest != base.digest


def test_the_same_inputs_give_the_same_key(model):
    assert _key(model) == _key(model) and _key(model).digest == _key(model).digest


# -- the file format ----------------------------------------------------------------------------------


def test_wrap_and_unwrap_round_trip(model):
    key = _key(model)
    assert unwrap(key, wrap(key, b"engine bytes")) == b"engine bytes"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda blob: blob[:20], "truncated"),
        (lambda blob: blob[:-3], "truncated"),
        (lambda blob: b"XXXXXXXX" + blob[8:], "magic"),
        (lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]), "checksum"),
    ],
)
def test_damaged_files_are_recognised(model, damage, message):
    key = _key(model)
    with pytest.raises(CacheEntryError, match=message):
        unwrap(key, damage(wrap(key, b"x" * 100)))


def test_a_file_written_for_another_key_is_rejected(model):
    with pytest.raises(CacheEntryError, match="different engine key"):
        unwrap(_key(model), wrap(_key(model, factor=2.0), b"x" * 100))


# -- storing and loading --------------------------------------------------------------------------------


def test_store_then_load(model, tmp_path):
    cache, key = EngineCache(tmp_path), _key(model)
    assert cache.load(key) is None
    path = cache.store(key, b"payload", {"model": "srcnn3"})
    assert path.parent == tmp_path / "engines" and path.name == f"{key.digest}.engine"
    assert cache.load(key) == b"payload"
    assert '"model": "srcnn3"' in path.with_suffix(".json").read_text()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(model, tmp_path, monkeypatch):
    cache, key = EngineCache(tmp_path), _key(model)
    cache.store(key, b"old engine")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.store(key, b"new engine")
    monkeypatch.undo()
    assert cache.load(key) == b"old engine"
    assert [p.name for p in (tmp_path / "engines").iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_corrupt_engine_is_deleted_with_a_warning_and_rebuilt(model, tmp_path, caplog, damage):
    cache, key = EngineCache(tmp_path), _key(model)
    path = cache.store(key, b"good engine" * 100)
    blob = path.read_bytes()
    path.write_bytes({"truncate": blob[: len(blob) // 2], "flip": blob[:-1] + b"!", "empty": b""}[damage])
    builds = []

    def build():
        builds.append(1)
        return b"rebuilt engine"

    with caplog.at_level(logging.WARNING, logger="deploy_sdk_backends.tensorrt.cache"):
        payload, built = cache.get_or_build(key, build)
    assert (payload, built, len(builds)) == (b"rebuilt engine", True, 1)
    assert "unusable" in caplog.text and "rebuilt" in caplog.text
    assert cache.load(key) == b"rebuilt engine"


def test_an_engine_tensorrt_refuses_is_discarded(model, tmp_path, caplog):
    cache, key = EngineCache(tmp_path), _key(model)
    cache.store(key, b"engine from another TensorRT")
    with caplog.at_level(logging.WARNING, logger="deploy_sdk_backends.tensorrt.cache"):
        cache.discard(key, "TensorRT could not deserialize the engine")
    assert cache.load(key) is None and "could not deserialize" in caplog.text
    assert not cache.path(key).with_suffix(".json").exists()


def test_a_cached_engine_is_not_built_again(model, tmp_path):
    cache, key = EngineCache(tmp_path), _key(model)
    assert cache.get_or_build(key, lambda: b"first") == (b"first", True)
    assert cache.get_or_build(key, lambda: pytest.fail("built twice")) == (b"first", False)


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SDK_CACHE_DIR", str(tmp_path))
    assert EngineCache().root == tmp_path / "tensorrt"
    monkeypatch.delenv("SDK_CACHE_DIR")
    assert EngineCache().root.name == "tensorrt" and "deploy-sdk" in str(EngineCache().root)
    assert EngineCache(tmp_path / "mine").root == tmp_path / "mine"


def test_timing_cache_path_names_version_and_gpu_and_round_trips(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.timing_path("10.7.0", "NVIDIA H100 80GB HBM3", (9, 0))
    assert path.name == "10.7.0-NVIDIA-H100-80GB-HBM3-sm90.cache"
    assert cache.load_timing(path) == b""
    cache.store_timing(path, b"timings")
    assert cache.load_timing(path) == b"timings"


# -- the lock: two builders of one engine, one build ----------------------------------------------------


def _build_in_process(root: str, model_path: str, log_path: str, barrier) -> bytes:
    """Run in a child process: wait for the sibling, then ask for the same engine."""
    key = _key(Model(model_path))

    def slow_build() -> bytes:
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough that the sibling finds the lock taken
        return b"engine built by %d" % os.getpid()

    barrier.wait()
    payload, _ = EngineCache(root).get_or_build(key, slow_build)
    return payload


@pytest.mark.slow
def test_two_processes_build_the_same_engine_once(model, tmp_path):
    context = multiprocessing.get_context("spawn")
    log = tmp_path / "builds.log"
    with context.Manager() as manager:
        barrier = manager.Barrier(2)
        with context.Pool(2) as pool:
            jobs = [
                pool.apply_async(_build_in_process, (str(tmp_path / "cache"), str(model.path), str(log), barrier))
                for _ in range(2)
            ]
            results = [job.get(timeout=60) for job in jobs]
    assert len(log.read_text().split()) == 1
    assert results[0] == results[1]


def test_two_threads_build_the_same_engine_once(model, tmp_path):
    key, builds, results = _key(model), [], []
    barrier = threading.Barrier(2)

    def slow_build() -> bytes:
        builds.append(threading.get_ident())
        time.sleep(0.3)
        return b"engine"

    def worker():
        barrier.wait()
        results.append(EngineCache(tmp_path).get_or_build(key, slow_build)[0])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(builds) == 1 and results == [b"engine", b"engine"]


def test_a_build_that_fails_releases_the_lock_and_stores_nothing(model, tmp_path):
    cache, key = EngineCache(tmp_path), _key(model)

    def broken():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        cache.get_or_build(key, broken)
    assert cache.load(key) is None
    assert cache.get_or_build(key, lambda: b"second try") == (b"second try", True)
