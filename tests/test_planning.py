"""Predictor.plan: the one planning path (memory, tiles, margins per scale, batch limits) and the
public steps that run what it planned."""

import graphs
import numpy as np
import pytest
from onnx import TensorProto, helper

import sdk
from sdk import memory, planning


@pytest.fixture(scope="module")
def srcnn3():
    with sdk.Predictor("srcnn3", backend="ort-cpu") as p:
        yield p


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(7)
    base = rng.integers(0, 255, (20, 24, 3)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(base, 3, 0), 3, 1)[:57, :70])


def _diff(a, b) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(int) - b).max())


def test_a_small_image_runs_whole(srcnn3):
    plan = srcnn3.plan((40, 50), 3)
    assert not plan.tiled and plan.window == (40, 50) and plan.margin == 0 and plan.count(40, 50) == 1
    assert 1 <= plan.batch <= planning.MAX_BATCH
    # A group of images of one size runs in one engine call when it fits.
    assert srcnn3.plan((40, 50), 3, count=3).batch >= 3


def test_the_margin_is_derived_at_each_scale(srcnn3):
    """srcnn3 convolves after its Resize: at x1 those kernels reach further in input pixels than at x4."""
    plans = {scale: srcnn3.plan((300, 300), scale, tile=32) for scale in (1, 2, 3, 4)}
    margins = [plans[scale].margin for scale in (1, 2, 3, 4)]
    assert margins == sorted(margins, reverse=True) and margins[0] > margins[-1]
    for plan in plans.values():
        assert plan.tiled and plan.window == (32 + 2 * plan.margin,) * 2


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_a_tiled_plan_gives_the_whole_image_result(srcnn3, picture, scale):
    """What the server does with small tiles: plan, then run the plan's windows; it must equal the
    whole-image run at every scale."""
    whole = srcnn3(picture, scale=scale, tile=0)
    plan = srcnn3.plan(picture.shape[:2], scale, tile=8, max_batch=3)
    assert plan.tiled and plan.count(*picture.shape[:2]) > 1 and plan.batch <= 3
    assert _diff(srcnn3.run_plan(picture[None], scale, plan)[0], whole) <= 1


def test_the_three_steps_equal_a_call(srcnn3, picture):
    prepared = srcnn3.prepare(picture[None], 2)
    out = srcnn3.finish(srcnn3.run_tensor(prepared.tensor, 2), prepared)
    assert np.array_equal(out[0], srcnn3(picture, scale=2))
    assert np.array_equal(srcnn3.run_windows(picture[None], 2)[0], out[0])
    bgr = srcnn3.finish(srcnn3.run_tensor(prepared.tensor, 2), prepared, color="bgr")
    assert np.array_equal(bgr[0], out[0][..., ::-1])


def test_batch_limits(srcnn3):
    model = sdk.Predictor("espcn", backend="ort-cpu")  # a dynamic batch axis
    assert model.dynamic_batch
    assert model.plan((300, 300), tile=16, max_batch=2).batch == 2
    capped = model.plan((300, 300), tile=16, max_batch_pixels=3 * 32 * 32)
    assert capped.batch == max(1, 3 * 32 * 32 // (capped.window[0] * capped.window[1]))
    squeezed = sdk.Predictor("espcn", backend="ort-cpu", memory_budget="4MB").plan((300, 300))
    assert squeezed.tiled and squeezed.batch >= 1


def test_a_result_that_cannot_fit_is_refused_before_any_engine_call(srcnn3, monkeypatch):
    monkeypatch.setattr(srcnn3._session, "run", lambda feeds: pytest.fail("the engine ran"))
    side = int((memory.available() / 3) ** 0.5) // 4 + 1000
    with pytest.raises(sdk.TooLargeError, match="more than the .* of memory available"):
        srcnn3.plan((side, side), 4)
    assert issubclass(sdk.TooLargeError, sdk.InputError)


@pytest.mark.parametrize(
    "size, kwargs, message",
    [
        ((4, 4, 3), {}, "size="),
        ((0, 4), {}, "size="),
        ("big", {}, "size="),
        ((4, 4), {"tile": "big"}, "tile="),
        ((4, 4), {"tile": -1}, "tile="),
        ((4, 4), {"count": 0}, "count="),
        ((4, 4), {"scale": 2.5}, "scale="),
    ],
)
def test_bad_arguments_are_refused(srcnn3, size, kwargs, message):
    kwargs.setdefault("scale", 2)
    with pytest.raises(sdk.InputError, match=message):
        srcnn3.plan(size, **kwargs)


def test_tile_options_are_parsed_in_one_place(srcnn3):
    from sdk.tiling import parse_tile

    assert [parse_tile(v) for v in ("auto", " AUTO ", None, "512", 0, np.int64(8))] == [
        "auto",
        "auto",
        "auto",
        512,
        0,
        8,
    ]
    with pytest.raises(sdk.InputError, match="--tile -2"):
        parse_tile("-2", "--tile ")
    assert srcnn3.plan((300, 300), 2, tile="16").window == srcnn3.plan((300, 300), 2, tile=16).window


def test_static_size_models_get_windows_of_their_size_with_a_margin_that_fits(tmp_path, picture):
    model = graphs.runtime_scale_model()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16]))
    with sdk.Predictor(graphs.save(model, tmp_path / "static16.onnx"), backend="ort-cpu") as p:
        assert not p.dynamic_batch
        plan = p.plan(picture.shape[:2], 2)
        assert plan.tiled and plan.exact and plan.window == (16, 16) and plan.batch == 1
        assert 0 < 2 * plan.margin < 16  # the graph's margin would leave no core: it shrinks
        assert not p.plan((16, 16), 2).tiled
        small = p.plan((10, 12), 2)  # padded up to the model's size
        assert small.exact and small.window == (16, 16)
        assert _diff(p.run_plan(picture[None], 2, plan)[0], p(picture, scale=2)) == 0


def test_run_plan_checks_what_it_is_given(srcnn3, picture):
    plan = srcnn3.plan((10, 10), 2)
    with pytest.raises(sdk.InputError, match="plan again"):
        srcnn3.run_plan(picture[None], 2, plan)
    with pytest.raises(sdk.InputError, match="N x H x W x 3 uint8"):
        srcnn3.run_plan(picture, 2, plan)


@pytest.mark.serve
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # works the same on httpx
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_the_server_plans_as_the_predictor_does(srcnn3, picture, scale, monkeypatch):
    """One planning path: the server's windows are the Predictor's (the margin derived at each scale,
    not at one fixed scale), so with small tiles forced on both its answer is the Predictor's result."""
    pytest.importorskip("starlette", reason="the server needs the serve extra: pip install 'deploy-sdk[serve]'")
    pytest.importorskip("httpx", reason="starlette's test client needs httpx: pip install 'deploy-sdk[dev]'")
    from serving import decode, encode
    from starlette.testclient import TestClient

    from sdk.serve import create_app
    from sdk.serve.runner import TileRunner

    windows = set()  # the shapes the server cuts
    prepare = TileRunner.prepare
    monkeypatch.setattr(TileRunner, "prepare", lambda self, b, s: windows.add(b.shape[1:3]) or prepare(self, b, s))
    tile = 16  # picture is 57x70: several windows at every scale
    plan = srcnn3.plan(picture.shape[:2], scale, tile=tile)
    assert plan.tiled and plan.count(*picture.shape[:2]) > 4
    expected = srcnn3(picture, scale=scale, tile=tile)
    with TestClient(create_app(srcnn3, tile=tile)) as client:
        response = client.post(f"/v1/models/srcnn3/upscale?scale={scale}", content=encode(picture))
    assert response.status_code == 200, response.text
    assert windows == {plan.window}  # (the margin at x1 is 10 pixels, at x4 6)
    assert _diff(decode(response.content), expected) == 0
