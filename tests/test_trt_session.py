"""The trt session's own logic - one engine per factor, the LRU, profile widening, the disk cache,
recovery from an engine TensorRT refuses - run on the CPU with a stand-in for the two TensorRT steps.

The stand-in "engine" is the ONNX file the session hands to TensorRT's parser, and the stand-in
runner executes it with ONNX Runtime. So these tests check what the SDK does around TensorRT, and
that the graph TensorRT would be given computes the right thing; TensorRT itself is exercised only
by test_trt_engine.py, on a machine that has it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from types import SimpleNamespace

import graphs
import numpy as np
import onnx
import pytest

from deploy_sdk_backends.tensorrt import session as session_module
from deploy_sdk_backends.tensorrt.cache import wrap
from deploy_sdk_backends.tensorrt.options import TrtOptions
from deploy_sdk_backends.tensorrt.runtime import IncompatibleEngine
from sdk.devices import GPU, Device
from sdk.errors import InputError, SDKError
from sdk.model import Model

ort = pytest.importorskip("onnxruntime")
GPU0 = GPU(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 << 30)
REFUSED = b"engine written by another TensorRT"


class StandIn:
    """Records builds and runners; builds return the parsed ONNX file's bytes."""

    def __init__(self, fp16_flag: bool = True):
        flags = SimpleNamespace(FP16=object()) if fp16_flag else SimpleNamespace()
        self.trt = SimpleNamespace(__version__="10.7.0", BuilderFlag=flags)
        self.builds: list = []
        self.closed = 0

    def build(self, trt, onnx_path, nodes, profile, settings, timing, what, progress):
        self.builds.append(SimpleNamespace(profile=profile, what=what, timing=timing))
        return Path(onnx_path).read_bytes(), timing + b"+"

    def runner(self, trt, logger, payload, device):
        if payload == REFUSED:
            raise IncompatibleEngine("TensorRT could not deserialize the engine")
        stand_in = self

        class Runner:
            def __init__(self):
                self.proto = onnx.load_from_string(payload)
                self._session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])

            def run(self, feeds):
                names = [o.name for o in self._session.get_outputs()]
                return dict(zip(names, self._session.run(names, dict(feeds))))

            def close(self):
                stand_in.closed += 1

        return Runner()


class Device0:
    @contextlib.contextmanager
    def active(self):
        yield


def _install(monkeypatch, fake: StandIn) -> StandIn:
    monkeypatch.setattr(session_module, "import_tensorrt", lambda: fake.trt)
    monkeypatch.setattr(session_module, "cuda_device", lambda gpu: Device0())
    monkeypatch.setattr(session_module, "logger_for", lambda trt: None)
    monkeypatch.setattr(session_module, "build", fake.build)
    monkeypatch.setattr(session_module, "EngineRunner", fake.runner)
    return fake


@pytest.fixture
def stand_in(monkeypatch):
    return _install(monkeypatch, StandIn())


@pytest.fixture
def model(tmp_path) -> Model:
    return Model(graphs.save(graphs.runtime_scale_model(), tmp_path / "srcnn3.onnx"))


def _session(model, tmp_path, **options):
    return session_module.TensorRTSession(
        model, Device("cuda", 0), GPU0, TrtOptions.parse({"cache_dir": tmp_path / "cache", **options})
    )


def _feeds(factor, height=40, width=48, seed=0):
    image = np.random.default_rng(seed).uniform(0, 255, (1, 3, height, width)).astype(np.float32)
    return {"input": image, "factor": np.array([1, 1, factor, factor], np.float32)}


def _original(model, feeds):
    return ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_one_engine_per_factor_each_matching_the_original(stand_in, model, tmp_path):
    session = _session(model, tmp_path)
    for factor in (2, 3, 4):
        feeds = _feeds(factor)
        out = session.run(feeds)["output"]
        assert out.shape == (1, 3, 40 * factor, 48 * factor)
        assert np.abs(out - _original(model, feeds)).max() <= 1e-4
    session.run(_feeds(3, seed=1))  # a known factor: no new engine
    assert len(stand_in.builds) == 3
    assert [b.what for b in stand_in.builds] == [f"srcnn3 (factor=[1, 1, {f}, {f}], fp32)" for f in (2, 3, 4)]
    assert len(list((tmp_path / "cache" / "engines").glob("*.engine"))) == 3


def test_a_second_session_takes_the_engines_from_disk(stand_in, model, tmp_path):
    first = _session(model, tmp_path)
    first.run(_feeds(2))
    first.close()
    second = _session(model, tmp_path)
    second.run(_feeds(2))
    assert len(stand_in.builds) == 1


def test_the_timing_cache_carries_over_between_builds(stand_in, model, tmp_path):
    session = _session(model, tmp_path)
    session.run(_feeds(2))
    session.run(_feeds(3))
    assert [b.timing for b in stand_in.builds] == [b"", b"+"]


def test_the_lru_closes_the_least_recently_used_engine(stand_in, model, tmp_path):
    session = _session(model, tmp_path, max_engines=2)
    for factor in (2, 3, 2, 4):  # 3 is the least recently used when 4 arrives
        session.run(_feeds(factor))
    assert stand_in.closed == 1 and len(session._engines) == 2
    assert [spec[0][2][2] for spec in session._engines] == [2.0, 4.0]


def test_a_bigger_image_widens_a_derived_profile_once(stand_in, model, tmp_path, caplog):
    session = _session(model, tmp_path)
    session.run(_feeds(2, 40, 48))
    with caplog.at_level(logging.WARNING, logger="deploy_sdk_backends.tensorrt.session"):
        out = session.run(_feeds(2, 100, 70))["output"]
    session.run(_feeds(2, 40, 48))
    assert out.shape == (1, 3, 200, 140)
    assert [b.profile["input"].max for b in stand_in.builds] == [(1, 3, 64, 64), (1, 3, 128, 128)]
    assert "outside the engine's profile" in caplog.text and stand_in.closed == 1


def test_a_given_profile_is_never_widened(stand_in, model, tmp_path):
    profile = {"input": [(1, 3, 16, 16), (1, 3, 64, 64), (1, 3, 64, 64)]}
    session = _session(model, tmp_path, profile=profile)
    session.run(_feeds(2, 40, 48))
    with pytest.raises(InputError, match="outside the TensorRT profile you gave"):
        session.run(_feeds(2, 100, 70))
    with pytest.raises(InputError, match="outside the TensorRT profile you gave"):
        session.run(_feeds(3, 8, 8))  # a new factor, still the user's range: nothing is built
    assert len(stand_in.builds) == 1 and stand_in.builds[0].profile.fixed == {"input"}


def test_the_factor_takes_no_profile(stand_in, model, tmp_path):
    with pytest.raises(InputError, match="take no profile"):
        _session(model, tmp_path, profile={"factor": [(4,), (4,), (4,)]})


def test_an_engine_tensorrt_refuses_is_deleted_and_rebuilt(stand_in, model, tmp_path, caplog):
    session = _session(model, tmp_path)
    session.run(_feeds(2))
    (engine,) = (tmp_path / "cache" / "engines").glob("*.engine")
    engine.write_bytes(wrap(SimpleNamespace(digest=engine.stem), REFUSED))  # well-formed, but refused
    with caplog.at_level(logging.WARNING):
        again = _session(model, tmp_path)
        feeds = _feeds(2)
        out = again.run(feeds)["output"]
    assert "could not deserialize" in caplog.text and len(stand_in.builds) == 2
    assert np.abs(out - _original(model, feeds)).max() <= 1e-4


def test_fp16_without_a_builder_flag_hands_tensorrt_an_fp16_graph(monkeypatch, model, tmp_path):
    _install(monkeypatch, StandIn(fp16_flag=False))  # TensorRT 11: strongly typed, no BuilderFlag.FP16
    session = _session(model, tmp_path, precision="fp16")
    feeds = _feeds(3)
    out = session.run(feeds)["output"]
    (loaded,) = session._engines.values()
    weights = {t.name: t.data_type for t in loaded.runner.proto.graph.initializer}
    assert weights["c1_w"] == onnx.TensorProto.FLOAT16 and out.dtype == np.float32
    assert np.abs(out - _original(model, feeds)).max() < 1.0


def test_fp16_with_the_builder_flag_leaves_the_graph_in_fp32(stand_in, model, tmp_path):
    session = _session(model, tmp_path, precision="fp16")  # TensorRT 10: the builder flag does it
    session.run(_feeds(3))
    (loaded,) = session._engines.values()
    assert {t.data_type for t in loaded.runner.proto.graph.initializer} == {onnx.TensorProto.FLOAT}


def test_a_closed_session_says_so(stand_in, model, tmp_path):
    session = _session(model, tmp_path)
    session.run(_feeds(2))
    session.close()
    session.close()
    assert stand_in.closed == 1
    with pytest.raises(SDKError, match="closed"):
        session.run(_feeds(2))
