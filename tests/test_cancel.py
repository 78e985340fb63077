"""sdk.CancelToken: a Predictor call called off from another thread or at a deadline stops its work -
between windows on every backend, and inside one engine run on ort-cpu (RunOptions.terminate)."""

from __future__ import annotations

import threading
import time

import graphs
import numpy as np
import pytest

import sdk
from sdk import Cancelled, CancelToken, Predictor
from sdk.cancel import all_of
from sdk.tiling import Plan, upscale_tiled


def test_a_token_is_cancelled_once_from_any_thread_and_tells_its_watchers():
    token = CancelToken()
    assert not token.cancelled
    token.check()  # live: nothing happens
    told = []
    with token.watch(lambda: told.append(threading.current_thread().name)):
        worker = threading.Thread(target=token.cancel, args=("stop now",), name="canceller")
        worker.start()
        worker.join(5)
    assert told == ["canceller"] and token.cancelled and token.reason == "stop now"
    token.cancel("again")  # idempotent: the first reason stays, watchers are not told twice
    assert told == ["canceller"] and token.reason == "stop now"
    with pytest.raises(Cancelled, match="stop now"):
        token.check()
    late = []
    with token.watch(lambda: late.append(1)):  # already cancelled: told at once
        pass
    assert late == [1]


def test_a_deadline_cancels_by_itself_and_fires_a_watcher_without_anyone_asking():
    token = CancelToken(timeout=0.2)
    fired = threading.Event()
    with token.watch(fired.set):
        assert fired.wait(5)  # a timer told it: nobody polled the token
    assert token.cancelled and "deadline of 0.2 s" in token.reason
    with pytest.raises(sdk.InputError, match="timeout"):
        CancelToken(timeout=-1)
    with pytest.raises(sdk.InputError):
        CancelToken(timeout=float("nan"))


def test_a_shared_call_is_called_off_only_when_every_caller_is():
    first, second = CancelToken(), CancelToken()
    with all_of([first, second]) as joined:
        first.cancel()
        assert not joined.cancelled
        second.cancel()
        assert joined.cancelled
    alone = CancelToken()
    with all_of([alone]) as joined:
        assert joined is alone


def test_tiled_work_stops_between_windows_for_any_runner():
    token, calls = CancelToken(), []

    def run_windows(windows):
        calls.append(len(windows))
        if len(calls) == 2:
            token.cancel()
        return np.zeros((len(windows), windows.shape[1], windows.shape[2], 3), np.uint8)

    images = np.zeros((1, 100, 100, 3), np.uint8)
    with pytest.raises(Cancelled):
        upscale_tiled(images, 1, Plan((20, 20), 2, batch=1), run_windows, cancel=token)
    assert len(calls) == 2  # of 49 windows: none ran after the cancel


def test_a_session_without_its_own_way_to_stop_is_checked_before_and_after_its_run():
    class Slow(sdk.Session):
        inputs, outputs = (), ()

        def run(self, feeds):
            token.cancel()  # called off while it ran
            return {"output": np.zeros(1)}

    token = CancelToken()
    with pytest.raises(Cancelled):
        Slow().run_cancellable({}, token)
    ran = []
    Slow.run = lambda self, feeds: ran.append(1)
    with pytest.raises(Cancelled):
        Slow().run_cancellable({}, token)  # already cancelled: the engine is not called at all
    assert ran == []


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    path = graphs.save(graphs.deep_model(layers=150), tmp_path_factory.mktemp("deep") / "deep.onnx")
    with Predictor(path, backend="ort-cpu") as p:
        yield p


def test_ort_cpu_stops_inside_one_engine_run(deep):
    """One whole-image run of 150 convolutions is called off a tenth of the way in: ONNX Runtime
    stops between two nodes, so the call returns long before the run would have ended."""
    image = np.random.default_rng(0).integers(0, 256, (384, 384, 3), dtype=np.uint8)
    deep(image[:32, :32], tile=0)  # warm up
    started = time.perf_counter()
    want = deep(image, tile=0)
    whole = time.perf_counter() - started
    token = CancelToken(timeout=whole / 10)
    started = time.perf_counter()
    with pytest.raises(Cancelled, match="deadline"):
        deep(image, tile=0, cancel=token)
    took = time.perf_counter() - started
    assert took < whole / 2, (took, whole)
    # The session is whole afterwards: the next call gives the same picture.
    assert np.array_equal(deep(image, tile=0, cancel=CancelToken()), want)


def test_raw_runs_take_a_token_too(deep):
    feeds = {"input": np.zeros((1, 3, 256, 256), np.float32)}
    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        for _ in range(100):  # each run checks the token; a live token never stops one
            deep.run(feeds, cancel=token)
    assert time.perf_counter() - started < 10
    assert deep.run(feeds, cancel=CancelToken())["output"].shape == (1, 3, 256, 256)


def test_a_faulty_watcher_does_not_fail_the_canceller(caplog):
    token, told = CancelToken(), []

    def broken():
        raise RuntimeError("a plugin's bug")

    with token.watch(broken), token.watch(lambda: told.append(1)):
        token.cancel()  # no exception here: the canceller may be a server's event loop
    assert token.cancelled and told == [1]
    assert "watcher failed" in caplog.text
