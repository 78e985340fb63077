"""Automatic tiling: results equal the whole-image run, memory stays within the budget, absurd
requests are refused before any engine call, and one Predictor serves many threads."""

import time
from concurrent.futures import ThreadPoolExecutor

import graphs
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
from onnx import TensorProto, helper

import sdk
from sdk import planning, tiling
from sdk.footprint import footprint


def _diff(a, b) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(int) - b).max())


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)
    # Smooth structure plus noise: edges everywhere, so a wrong margin shows.
    return np.ascontiguousarray(np.repeat(np.repeat(base, 3, 0), 3, 1)[:83, :101])


def _count_runs(predictor, monkeypatch):
    calls = []
    real = predictor._session.run

    def counting(feeds):
        calls.append({k: v.shape for k, v in feeds.items()})
        return real(feeds)

    monkeypatch.setattr(predictor._session, "run", counting)
    return calls


@pytest.mark.parametrize("model, scale", [("srcnn3", 2), ("srcnn3", 3), ("srcnn", 3), ("espcn", 3)])
def test_tiles_equal_the_whole_image(model, scale, picture):
    predictor = sdk.Predictor(model, backend="ort-cpu")
    scale_arg = scale if predictor.scale is None else None
    whole = predictor(picture, scale=scale_arg, tile=0)
    for tile in (16, 37):
        assert _diff(predictor(picture, scale=scale_arg, tile=tile), whole) <= 1
    squeezed = sdk.Predictor(model, backend="ort-cpu", memory_budget="8MB")
    assert _diff(squeezed(picture, scale=scale_arg), whole) <= 1


def test_the_margin_is_the_receptive_radius_plus_safety():
    # (the radius itself is read from the graph: tests/test_graph.py)
    assert tiling.margin_for(3.5) == 4 + tiling.SAFETY and tiling.margin_for(8.0) == 8 + tiling.SAFETY
    assert tiling.margin_for(None) == tiling.DEFAULT_MARGIN


def test_auto_tiles_only_above_the_budget(picture, monkeypatch):
    roomy = sdk.Predictor("srcnn3", backend="ort-cpu", memory_budget="4GiB")
    calls = _count_runs(roomy, monkeypatch)
    roomy(picture, scale=3)
    assert len(calls) == 1  # it fits: one run, no tiles
    tight = sdk.Predictor("srcnn3", backend="ort-cpu", memory_budget="40MB")
    calls = _count_runs(tight, monkeypatch)
    tight(picture, scale=3)
    peak = footprint(tight.model, tight.spec, 3)
    assert len(calls) > 1
    for shapes in calls:  # every run stays within the budget
        n, _, h, w = shapes["input"]
        assert peak.peak(n, h, w) <= 40e6


def test_budget_from_the_environment(picture, monkeypatch):
    monkeypatch.setenv("SDK_MEMORY_BUDGET", "30MB")
    predictor = sdk.Predictor("srcnn3", backend="ort-cpu")
    calls = _count_runs(predictor, monkeypatch)
    predictor(picture, scale=3)
    assert len(calls) > 1
    monkeypatch.setenv("SDK_MEMORY_BUDGET", "lots")
    with pytest.raises(sdk.InputError, match="SDK_MEMORY_BUDGET"):
        predictor(picture, scale=3)
    with pytest.raises(sdk.InputError, match="not a size"):
        sdk.Predictor("srcnn3", backend="ort-cpu", memory_budget="huge")


def test_a_budget_too_small_for_any_tile_says_so(picture):
    predictor = sdk.Predictor("srcnn3", backend="ort-cpu", memory_budget="100kB")
    with pytest.raises(sdk.InputError, match="too small for even one"):
        predictor(picture, scale=3)


def test_same_size_tiles_run_as_one_batch(runtime_model, picture, monkeypatch):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    whole = predictor(picture, scale=2, tile=0)
    calls = _count_runs(predictor, monkeypatch)
    progress = []
    out = predictor(picture, scale=2, tile=16, progress=lambda done, total: progress.append((done, total)))
    assert _diff(out, whole) <= 1
    tiles = progress[-1][1]
    assert tiles > 4 and len(calls) < tiles and max(c["input"][0] for c in calls) > 1
    assert progress[-1] == (tiles, tiles)


def _static_model(size: int) -> str:
    """The runtime-scale test graph exported with a static 1 x 3 x size x size input."""
    model = graphs.runtime_scale_model()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size]))
    return model


def test_static_size_models_run_in_tiles_of_exactly_their_size(tmp_path, runtime_model, picture, monkeypatch):
    path = graphs.save(_static_model(32), tmp_path / "static32.onnx")
    static = sdk.Predictor(path, backend="ort-cpu")
    assert static.pipeline.static_size == (32, 32)
    calls = _count_runs(static, monkeypatch)
    out = static(picture, scale=2)
    assert {c["input"] for c in calls} == {(1, 3, 32, 32)}
    dynamic = sdk.Predictor(runtime_model, backend="ort-cpu")
    assert _diff(out, dynamic(picture, scale=2, tile=0)) <= 1
    small = static(picture[:20, :25], scale=2)  # smaller than the static size: padded, then cropped
    assert small.shape == (40, 50, 3)


@pytest.mark.parametrize("scale", [10**6, 10**4])
def test_absurd_outputs_are_refused_before_any_engine_call(runtime_model, scale, monkeypatch):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    calls = _count_runs(predictor, monkeypatch)
    start = time.perf_counter()
    with pytest.raises(sdk.InputError, match="pixels .* more than the .* of memory available"):
        predictor(np.zeros((48, 40, 3), np.uint8), scale=scale)
    assert time.perf_counter() - start < 0.5 and calls == []


def test_a_100k_square_request_is_refused(runtime_model, monkeypatch):
    import sdk.memory

    monkeypatch.setattr(sdk.memory, "available", lambda: 16 * 2**30)  # a 16 GiB machine, whatever this one has
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    calls = _count_runs(predictor, monkeypatch)
    with pytest.raises(sdk.InputError, match="100000x100000 pixels"):
        predictor(np.zeros((1000, 1000, 3), np.uint8), scale=100)
    assert calls == []


def test_untiled_runs_that_cannot_fit_are_refused(monkeypatch):
    import sdk.memory

    monkeypatch.setattr(sdk.memory, "available", lambda: 2 * 2**30)
    predictor = sdk.Predictor("srcnn3", backend="ort-cpu")
    calls = _count_runs(predictor, monkeypatch)
    with pytest.raises(sdk.InputError, match="in one piece needs about"):
        predictor(np.zeros((1000, 1000, 3), np.uint8), scale=3, tile=0)
    assert calls == []


def test_eight_threads_on_one_predictor_equal_serial(picture):
    predictor = sdk.Predictor("srcnn3", backend="ort-cpu", memory_budget="40MB")
    inputs = [np.ascontiguousarray(np.roll(picture, 7 * i, axis=1)) for i in range(8)]
    serial = [predictor(x, scale=2) for x in inputs]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda x: predictor(x, scale=2), inputs))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_predict_batch_tiles_too(picture):
    predictor = sdk.Predictor("srcnn3", backend="ort-cpu", memory_budget="40MB")
    batch = predictor.predict_batch([picture, picture[::-1].copy()], scale=2)
    assert _diff(batch[0], predictor(picture, scale=2, tile=0)) <= 1


def test_spans_cover_every_pixel_once():
    for length in (1, 5, 31, 32, 33, 100):
        for window, margin in ((8, 2), (32, 6), (200, 10)):
            spans = tiling.spans(length, window, margin)
            covered = [i for start, end, _ in spans for i in range(start, end)]
            assert covered == list(range(length))
            for start, end, at in spans:
                size = min(window, length)
                assert at >= 0 and at + size <= length and at <= start and end <= at + size
                assert start - at >= margin or at == 0
                assert at + size - end >= margin or at + size == length


def _planner(fp, margin=6, dynamic_batch=False, static_size=None, multiple_of=1):
    """A Planner whose footprint and margin are given, not derived from a graph."""
    from types import SimpleNamespace

    from sdk import planning

    spec = SimpleNamespace(multiple_of=multiple_of, image_input="input")
    planner = planning.Planner(None, spec, static_size, "cpu", 2**30, dynamic_batch)
    planner._sizing[3] = (fp, margin)
    return planner


def test_auto_tiles_share_each_axis_evenly():
    from sdk.footprint import Footprint

    planner = _planner(Footprint(fixed=0, per_pixel=5000.0, derived=True))
    for height, width in ((768, 1024), (3000, 4000), (1000, 1001), (90, 7000)):
        plan = planner.plan((1, height, width), 3, "auto")
        assert plan.tiled and plan.window[0] * plan.window[1] * 5000 <= 2**30
        work = plan.count(height, width) * plan.window[0] * plan.window[1]
        assert work <= 1.10 * height * width, (height, width, plan)  # margins cost at most 10%
    assert planner.plan((1, 100, 100), 3, "auto") == tiling.Plan((100, 100), 0, 1, tiled=False)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(margin=st.integers(0, 40), extra=st.integers(1, 500), length=st.integers(1, 3000))
def test_spans_pay_margins_only_between_windows(margin, extra, length):
    window = 2 * margin + extra
    cores = tiling.spans(length, window, margin)
    assert cores[0][0] == 0 and cores[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))  # cores tile the axis, no gap, no overlap
    for start, end, at in cores:
        assert at >= 0 and at + min(window, length) <= length
        assert start == 0 or start - at >= margin  # context before, unless the image edge is there
        assert end == length or at + window - end >= margin  # and after
    if length > window:
        # The even split uses no more windows than the largest window would, each no larger.
        even = planning._even(length, window, margin, 1)
        assert even <= window and len(tiling.spans(length, even, margin)) == len(cores)
