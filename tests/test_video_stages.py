"""The video pipeline's stages (sdk.video.stages): parallel workers that keep the order, markers,
errors and stops. Plain Python work here: no PyAV, no engine."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from sdk.video.stages import Marker, Pipeline, Stage


@dataclass
class Mark(Marker):
    name: str


class Tracked:
    """A work function that sleeps a random while per call and records how many calls overlap."""

    def __init__(self, seed: int = 0, fail_on=None):
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.batches: list[list] = []
        self.random = random.Random(seed)
        self.fail_on = fail_on

    def __call__(self, items: list) -> list:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.batches.append(list(items))
            pause = self.random.uniform(0.0, 0.02)
        try:
            time.sleep(pause)
            if self.fail_on is not None and self.fail_on in items:
                raise ValueError(f"item {self.fail_on} is bad")
            return [x * 10 for x in items]
        finally:
            with self.lock:
                self.running -= 1


def _no_stage_threads_left() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("sdk-video-") and t.is_alive()]


@pytest.mark.parametrize("workers, batch", [(1, 1), (3, 1), (2, 3)])
def test_workers_keep_the_order_of_items_and_markers(workers, batch):
    items = []
    for segment in range(4):
        items.append(Mark(f"start {segment}"))
        items += [segment * 100 + i for i in range(7)]
        items.append(Mark(f"end {segment}"))
    work = Tracked()
    with Pipeline(iter(items), [Stage("engine", work, batch=batch, workers=workers), Stage("after", lambda b: b)]) as p:
        out = list(p)
    assert out == [x if isinstance(x, Mark) else x * 10 for x in items]
    for called in work.batches:  # never a batch across a marker, never more than asked
        assert 1 <= len(called) <= batch and len({x // 100 for x in called}) == 1
    if workers > 1:
        assert 1 < work.most <= workers  # the calls really overlapped, and no more than the workers
    else:
        assert work.most == 1
    assert _no_stage_threads_left()


def test_a_worker_s_error_stops_the_pipeline_and_reaches_the_consumer():
    work = Tracked(fail_on=13)
    seen = []
    pipeline = Pipeline(iter(range(1000)), [Stage("engine", work, workers=2)])
    with pytest.raises(ValueError, match="item 13 is bad"), pipeline:
        for item in pipeline:
            seen.append(item)  # noqa: PERF402 (what came before the error, one by one)
    assert seen == [x * 10 for x in range(len(seen))] and len(seen) <= 13  # in order, nothing after it
    assert len(work.batches) < 100  # it stopped soon, not after the whole input
    assert _no_stage_threads_left()


def test_stop_midway_waits_for_the_running_calls_and_drops_the_rest():
    work = Tracked()
    fed = []

    def source():
        for i in range(10_000):
            fed.append(i)
            yield i

    pipeline = Pipeline(source(), [Stage("engine", work, workers=2)])
    first = next(iter(pipeline))
    pipeline.stop()
    assert first == 0
    assert work.running == 0  # stop() returned after the calls in flight ended
    assert len(fed) < 50  # bounded queues: the source was held back, not drained
    assert _no_stage_threads_left()


def test_calls_in_flight_are_bounded_when_the_consumer_is_slow():
    """Memory stays flat: a slow consumer holds the workers back instead of results piling up."""
    work = Tracked()
    with Pipeline(iter(range(200)), [Stage("engine", work, workers=2)], depth=2) as p:
        out = []
        for item in p:
            out.append(item)
            if len(out) == 6:
                time.sleep(0.3)  # everything upstream fills up meanwhile
                # consumed, the outbox, the futures waiting and the one collected, one queued in the pool
                assert len(work.batches) <= 6 + 2 + 2 + 1 + 1
    assert out == [x * 10 for x in range(200)]


def test_a_video_job_with_engine_workers_gives_the_one_call_result_frame_for_frame(tmp_path, runtime_model):
    """The job runs ``predictor.concurrent_calls`` engine calls at once (in threads of the engine
    stage) and the output is the one-call-at-a-time output: every frame in its place, every timestamp."""
    pytest.importorskip("av", reason="video needs PyAV: pip install 'deploy-sdk[video]'")
    import clips

    from sdk.video import open_predictor, read_frames, upscale_video

    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=16, durations=[40, 80, 20, 40] * 4, keyint=5))
    with open_predictor(runtime_model, backend="ort-cpu") as predictor:
        threads = set()
        run_plan = predictor.run_plan

        def recorded(*args, **kwargs):
            threads.add(threading.current_thread().name)
            return run_plan(*args, **kwargs)

        predictor.run_plan = recorded
        predictor.concurrent_calls = 3
        upscale_video(predictor, source, tmp_path / "workers.mkv", scale=2, segment_seconds=0.1, lossless=True)
        assert len(threads) > 1 and all(name.startswith("sdk-video-engine") for name in threads)
        predictor.concurrent_calls = 1
        upscale_video(predictor, source, tmp_path / "one.mkv", scale=2, segment_seconds=0.1, lossless=True)
    workers, one = list(read_frames(tmp_path / "workers.mkv")), list(read_frames(tmp_path / "one.mkv"))
    assert [f.pts for f in workers] == [f.pts for f in one] == [f.pts for f in read_frames(source)]
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(workers, one))
    assert len({f.pixels.tobytes() for f in one}) > 1  # the frames differ: a swap would show


def test_the_backend_says_how_to_open_its_engine_for_calls_at_once(monkeypatch, caplog):
    """Backend.concurrent_options: ort-cpu splits the cores between the calls; a backend that says
    nothing (the default), whose hook fails, or whose option the caller sets itself runs one call at a
    time; the options come on top of the server options."""
    import sdk.predictor
    import sdk.selection
    from sdk import Availability, Backend
    from sdk.devices import Device, cpu_cores
    from sdk.plugins import load_plugins
    from sdk.sharing import open_predictor, shared_options

    ort = load_plugins().get("ort-cpu").backend
    assert ort.concurrent_options(Device("cpu"), 2) == {"intra_op_num_threads": max(1, cpu_cores() // 2)}

    class Plain(Backend):
        name, devices, options = "plain", ("cpu",), ("threads", "spin")

        def _probe(self, device):
            return Availability.yes()

        def create_session(self, model, device, options):
            raise AssertionError("not opened here")

        def server_options(self, device):
            return {"spin": False}

    class Able(Plain):
        def concurrent_options(self, device, calls):
            return {"threads": 8 // calls, "unknown_knob": 1}

    class Broken(Plain):
        def concurrent_options(self, device, calls):
            raise RuntimeError("plugin bug")

    def use(backend):
        monkeypatch.setattr(sdk.selection, "candidates", lambda name, device: [(backend, Device("cpu"))])

    use(Plain())
    assert shared_options("plain", calls=4) == shared_options("plain") and shared_options("plain").calls == 1
    use(Able())
    found = shared_options("plain", calls=4)
    assert found.calls == 4 and dict(found.options) == {"spin": False, "threads": 2}
    assert shared_options("plain", calls=4, given={"threads": 1}).calls == 1  # the caller's own threads
    use(Broken())
    assert shared_options("plain", calls=4).calls == 1 and "plugin bug" in caplog.text

    class Opened:
        def __init__(self, model, backend, device, **options):
            self.backend, self.options, self.concurrent_calls = backend, options, 1

    monkeypatch.setattr(sdk.predictor, "Predictor", Opened)
    use(Able())
    opened = open_predictor("m", "plain", calls=2)
    assert opened.concurrent_calls == 2 and opened.options == {"spin": False, "threads": 4}
    assert open_predictor("m", "plain").concurrent_calls == 1
