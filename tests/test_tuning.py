"""``backend="auto"`` by measurement (sdk.tuning): the measured fastest engine wins, the ranking is
cached on what it depends on, and tune=False, SDK_TUNE=0 and named backends keep the old rules."""

from __future__ import annotations

import time

import pytest

import sdk.selection
from deploy_sdk_backends.onnxruntime import OrtCpuBackend
from sdk import Predictor
from sdk.backend import Session
from sdk.errors import BackendUnavailableError
from sdk.plugins import BackendRecord, Registry
from sdk.tuning import TIE, rank, split_option


class _Delayed(Session):
    """An ORT session that works ``delay`` seconds of CPU time longer per call (so that it is slower
    on both of auto's clocks, wall and CPU), counting its calls."""

    def __init__(self, inner, delay: float, calls: list, offset: float = 0.0):
        self._inner, self._delay, self._calls, self._offset = inner, delay, calls, offset
        self.inputs, self.outputs = inner.inputs, inner.outputs
        self.closed = False

    def run(self, feeds):
        self._calls.append(1)
        started = time.process_time()
        while time.process_time() - started < self._delay:
            pass
        return {name: value + self._offset for name, value in self._inner.run(feeds).items()}

    def close(self):
        self.closed = True
        self._inner.close()


def _engine(name: str, priority: int, delay: float, version: str = "1.0", starts: bool = True, offset: float = 0.0):
    calls: list = []
    made: list = []

    class Engine(OrtCpuBackend):
        def create_session(self, model, device, options):
            if not starts:
                raise BackendUnavailableError(f"{name} refused to start")
            made.append(_Delayed(super().create_session(model, device, options), delay, calls, offset))
            return made[-1]

    Engine.name, Engine.priority = name, priority
    engine = Engine()
    return BackendRecord(engine, name, "fake-engines", version), calls, made


@pytest.fixture
def engines(monkeypatch, tmp_path):
    """A registry of a slow engine with the higher priority and a fast one below it."""
    monkeypatch.setenv("SDK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SDK_TUNE", raising=False)
    slow, slow_calls, slow_made = _engine("slow-first", 500, 0.2)
    fast, fast_calls, _ = _engine("fast-second", 10, 0.0)
    registry = Registry({"slow-first": slow, "fast-second": fast})
    monkeypatch.setattr(sdk.selection, "load_plugins", lambda: registry)
    return {"registry": registry, "slow_calls": slow_calls, "fast_calls": fast_calls, "slow_made": slow_made}


@pytest.mark.slow
def test_auto_measures_the_engines_and_takes_the_fastest(engines, fixed_model):
    with Predictor(fixed_model, device="cpu") as predictor:
        assert predictor.backend == "fast-second"
        ranking = predictor.ranking
        assert not ranking.cached and ranking.chosen == "fast-second"
        assert [e["backend"] for e in ranking.entries] == ["fast-second", "slow-first"]
        assert ranking.entries[1]["ms"] >= 200 and ranking.entries[1]["ms"] > ranking.entries[0]["ms"]
    assert engines["slow_made"][0].closed  # the loser's session is not kept


@pytest.mark.slow
def test_the_ranking_is_cached_so_the_next_load_runs_no_trial(engines, fixed_model):
    Predictor(fixed_model, device="cpu").close()
    engines["slow_calls"].clear(), engines["fast_calls"].clear()
    with Predictor(fixed_model, device="cpu") as predictor:
        assert predictor.backend == "fast-second" and predictor.ranking.cached
    assert not engines["slow_calls"] and not engines["fast_calls"]
    assert not engines["slow_made"][1:]  # and the slow engine was not even loaded


@pytest.mark.slow
def test_a_new_engine_version_measures_again(engines, fixed_model):
    Predictor(fixed_model, device="cpu").close()
    registry = engines["registry"]
    record = registry.backends["slow-first"]
    registry.backends["slow-first"] = BackendRecord(record.backend, record.plugin, record.distribution, "2.0")
    with Predictor(fixed_model, device="cpu") as predictor:
        assert not predictor.ranking.cached


@pytest.mark.slow
def test_other_options_are_another_ranking(engines, fixed_model):
    Predictor(fixed_model, device="cpu").close()
    with Predictor(fixed_model, device="cpu", optimize=False) as predictor:
        assert not predictor.ranking.cached


def test_tune_false_sdk_tune_0_and_a_named_backend_go_by_the_old_rules(engines, fixed_model, monkeypatch):
    with Predictor(fixed_model, device="cpu", tune=False) as predictor:
        assert predictor.backend == "slow-first" and predictor.ranking is None
    with Predictor(fixed_model, backend="slow-first", device="cpu") as predictor:
        assert predictor.backend == "slow-first" and predictor.ranking is None
    monkeypatch.setenv("SDK_TUNE", "0")
    with Predictor(fixed_model, device="cpu") as predictor:
        assert predictor.backend == "slow-first" and predictor.ranking is None
    assert not engines["slow_calls"][5:]  # a few first calls at most (none are a trial's rounds)


@pytest.mark.slow
def test_an_engine_that_cannot_start_is_ranked_last_with_its_reason(engines, fixed_model, monkeypatch):
    broken, _, _ = _engine("broken-top", 900, 0.0, starts=False)
    engines["registry"].backends["broken-top"] = broken
    with Predictor(fixed_model, device="cpu") as predictor:
        assert predictor.backend == "fast-second"
        assert predictor.ranking.entries[-1] == {
            "backend": "broken-top",
            "device": "cpu",
            "error": "broken-top refused to start",
        }


def test_the_tune_option_must_be_a_bool():
    assert split_option({"tune": False, "x": 1}) == (False, {"x": 1})
    with pytest.raises(sdk.errors.InputError, match="tune='yes'"):
        split_option({"tune": "yes"})


def test_ties_go_to_the_higher_priority_and_clear_wins_to_the_fastest():
    a, b, c = ("a", "cpu"), ("b", "cpu"), ("c", "cpu")
    assert rank({a: 1.0 + TIE / 2, b: 1.0, c: 2.0}, [a, b, c]) == [a, b, c]
    assert rank({a: 1.0 + 2 * TIE, b: 1.0, c: 0.5}, [a, b, c]) == [c, b, a]
    assert rank({a: 3.0, b: 1.0 + TIE / 2, c: 1.0}, [a, b, c]) == [b, c, a]


@pytest.mark.slow
def test_sdk_backends_model_shows_the_measured_ranking(engines, fixed_model, capsys):
    import json

    from sdk.cli import main

    assert main(["backends", fixed_model, "--device", "cpu", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in document["backends"]} == {"slow-first", "fast-second"}
    ranking = document["ranking"]
    assert ranking["chosen"] == "fast-second" and not ranking["cached"]
    assert [e["backend"] for e in ranking["entries"]] == ["fast-second", "slow-first"]
    assert main(["backends", fixed_model, "--device", "cpu"]) == 0
    shown = capsys.readouterr().out
    assert "cached" in shown and "fast-second (auto)" in shown


@pytest.mark.slow
def test_a_faster_engine_whose_pictures_differ_is_not_chosen(engines, fixed_model):
    # The test model works in 0..255: an offset of 5 is 5 grey levels, over the 2 allowed.
    sloppy, _, _ = _engine("fast-but-off", 5, 0.0, offset=5.0)
    engines["registry"].backends["fast-but-off"] = sloppy
    with Predictor(fixed_model, device="cpu") as predictor:
        assert predictor.backend == "fast-second"
        last = predictor.ranking.entries[-1]
        assert last["backend"] == "fast-but-off" and "differ from slow-first's by up to" in last["error"]


class _Timed(Session):
    """A session whose call waits ``wait`` seconds (no CPU: as a call queued behind other jobs does)
    and then works ``work`` seconds of CPU time, on the fake clocks ``now`` = [wall, cpu]."""

    inputs = outputs = ()

    def __init__(self, now: list, wait: float, work: float):
        self.now, self.wait, self.work = now, wait, work

    def run(self, feeds):
        self.now[0] += self.wait + self.work
        self.now[1] += self.work
        return {}

    def close(self):
        pass


def _measure(monkeypatch, busy: str | None, device: str = "cpu"):
    """auto's measurement of a waiting engine (first by priority) and a working one."""
    from types import SimpleNamespace

    from sdk import tuning
    from sdk.devices import parse_device

    monkeypatch.setattr(tuning, "contended", lambda: busy)
    now = [0.0, 0.0]
    sessions = {"waits": _Timed(now, 0.15, 0.0), "works": _Timed(now, 0.0, 0.05)}
    pairs = [(SimpleNamespace(name=name), parse_device(device)) for name in sessions]
    trial = tuning.Trial(dict, "a trial")
    clocks = (lambda: now[0], lambda: now[1])
    ranking, _, _ = tuning.measure(pairs, lambda backend, _: sessions[backend.name], trial, {}, clocks)
    return ranking


def test_a_quiet_machine_ranks_by_wall_time(monkeypatch):
    ranking = _measure(monkeypatch, None)
    assert ranking.clock == "wall" and ranking.chosen == "works" and ranking.trial == "a trial"
    works, waits = ranking.entries
    assert works["ms"] == works["wall_ms"] < waits["ms"] == waits["wall_ms"]


def test_a_busy_machine_ranks_cpu_engines_by_cpu_time(monkeypatch):
    # Under load a call's wall time is mostly its wait for a core: the work is what ranks the engines.
    ranking = _measure(monkeypatch, "load 9.0 on 2 cores")
    assert ranking.clock == "cpu" and ranking.chosen == "waits"
    assert ranking.trial == "a trial; CPU time per call (load 9.0 on 2 cores)"
    waits, works = ranking.entries
    assert waits["ms"] == waits["cpu_ms"] < works["ms"] == works["cpu_ms"] >= 50
    assert waits["wall_ms"] >= 150


def test_a_gpu_engine_is_always_ranked_by_wall_time(monkeypatch):
    # A GPU's work is not the host's CPU time.
    ranking = _measure(monkeypatch, "load 9.0 on 2 cores", device="cuda")
    assert ranking.clock == "wall" and ranking.chosen == "works"


def test_contended_is_the_load_average_above_the_cpu_count(monkeypatch):
    from sdk import tuning

    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(tuning.os, "getloadavg", lambda: (2.0, 0.0, 0.0))
    assert tuning.contended() is None
    monkeypatch.setattr(tuning.os, "getloadavg", lambda: (6.5, 0.0, 0.0))
    assert tuning.contended() == "load 6.5 on 2 cores"
