"""The graph optimisation pass: same results as the unoptimised model, cached on content, opt-out.

The reference for every equality check is ONNX Runtime running the graph as it was written.
"""

import json

import graphs
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdk
from sdk.errors import InputError
from sdk.model import Model
from sdk.optimize import optimized_model, passes
from sdk.optimize.cache import OptimizedCache, OptimizeKey
from sdk.optimize.graph import load_with_weights, specialise
from sdk.optimize.passes import PASS_VERSION, optimise

# (mode, coordinate_transformation_mode, extra attributes): what our models and PyTorch exports use.
MODES = [
    ("cubic", "pytorch_half_pixel", {"cubic_coeff_a": -0.75}),
    ("cubic", "half_pixel", {"cubic_coeff_a": -0.75}),
    ("cubic", "half_pixel", {"cubic_coeff_a": -0.5}),
    ("cubic", "asymmetric", {"cubic_coeff_a": -0.75}),
    ("linear", "pytorch_half_pixel", {}),
    ("linear", "half_pixel", {}),
    ("linear", "asymmetric", {}),
    ("nearest", "asymmetric", {"nearest_mode": "floor"}),
    ("nearest", "half_pixel", {"nearest_mode": "round_prefer_floor"}),
    ("nearest", "half_pixel", {"nearest_mode": "round_prefer_ceil"}),
    ("nearest", "pytorch_half_pixel", {"nearest_mode": "floor"}),
]
FACTORS = range(1, 9)


def resize_model(mode, coords, extra, factor, channels=3, dtype=TensorProto.FLOAT) -> onnx.ModelProto:
    scales = numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    node = helper.make_node(
        "Resize", ["x", "roi", "scales"], ["y"], name="up", mode=mode, coordinate_transformation_mode=coords, **extra
    )
    graph = helper.make_graph(
        [node],
        "resize",
        [helper.make_tensor_value_info("x", dtype, ["n", channels, "h", "w"])],
        [helper.make_tensor_value_info("y", dtype, ["n", channels, "H", "W"])],
        [roi, scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def run(proto, feeds):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("mode,coords,extra", MODES, ids=lambda v: v if isinstance(v, str) else "")
def test_every_resize_mode_and_factor_equals_the_original(mode, coords, extra, factor):
    model = resize_model(mode, coords, extra, factor)
    rewritten, report = optimise(model)
    assert [r.done for r in report] == [True], report
    assert "Resize" not in {n.op_type for n in rewritten.graph.node}
    rng = np.random.default_rng(factor)
    for shape in [(2, 3, 7, 11), (1, 3, 1, 2), (1, 3, 16, 5)]:  # tiny sizes: both borders at once
        x = rng.uniform(0, 1, shape).astype(np.float32)
        np.testing.assert_allclose(run(rewritten, {"x": x}), run(model, {"x": x}), rtol=0, atol=2e-6)


def test_the_rewrite_is_a_polyphase_conv_on_the_small_grid():
    rewritten, _report = optimise(resize_model("cubic", "pytorch_half_pixel", {"cubic_coeff_a": -0.75}, 3))
    assert [n.op_type for n in rewritten.graph.node] == ["Pad", "Conv", "DepthToSpace"]
    weights = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    conv = rewritten.graph.node[1]
    assert weights[conv.input[1]].shape == (27, 1, 5, 5)  # 3 channels x 9 phases, 5x5 cubic support
    # Every phase's taps sum to 1 (a resize keeps flat areas flat).
    np.testing.assert_allclose(weights[conv.input[1]].sum(axis=(1, 2, 3)), 1, atol=1e-6)
    # The old scales and roi are gone with the Resize.
    assert set(weights) == {conv.input[1], rewritten.graph.node[0].input[1]}


def test_float16_resize_keeps_its_type():
    model = resize_model("linear", "half_pixel", {}, 2, dtype=TensorProto.FLOAT16)
    rewritten, report = optimise(model)
    assert report[0].done
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 6, 6)).astype(np.float16)
    out = run(rewritten, {"x": x})
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), run(model, {"x": x}).astype(np.float32), atol=2e-3)


@pytest.mark.parametrize(
    "case,model",
    [
        ("non-integer factor", resize_model("cubic", "half_pixel", {}, 2.5)),
        ("different factors per axis", None),
        ("align_corners (taps depend on the size)", resize_model("linear", "align_corners", {}, 2)),
        ("exclude_outside (renormalised borders)", resize_model("cubic", "half_pixel", {"exclude_outside": 1}, 2)),
        ("tf_crop_and_resize", resize_model("linear", "tf_crop_and_resize", {}, 2)),
    ],
)
def test_what_the_pass_cannot_prove_equal_is_left_alone(case, model):
    if model is None:
        model = resize_model("cubic", "half_pixel", {}, 2)
        model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32), "scales"))
    rewritten, report = optimise(model)
    assert [r.done for r in report] == [False], case
    assert "left alone" in report[0].what
    assert rewritten.SerializeToString() == model.SerializeToString()


def test_align_corners_at_factor_one_is_an_identity():
    rewritten, report = optimise(resize_model("linear", "align_corners", {}, 1))
    assert report[0].done and [n.op_type for n in rewritten.graph.node] == ["Identity"]


def test_a_model_without_resize_is_left_alone(y_model):
    model = Model(y_model)
    assert optimized_model(model) is None  # nothing to do: backends get the file as it is
    rewritten, report = optimise(model.proto)
    assert report == [] and rewritten.SerializeToString() == model.proto.SerializeToString()


# -- the bundled models ------------------------------------------------------------------------------


def test_bundled_srcnn3_is_equal_at_every_factor(photo):
    model = Model("srcnn3")
    x = photo.transpose(2, 0, 1)[None].astype(np.float32)
    reference = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    for factor in FACTORS:
        scales = np.array([1, 1, factor, factor], np.float32)
        rewritten, report = optimise(specialise(load_with_weights(model.path), {"factor": scales}))
        # the Resize, and conv3 (5x5, 32 -> 3: a narrow convolution, see test_optimize_narrow.py)
        assert [r.done for r in report] == [True, True] and "Conv 5x5 32 -> 3" in report[1].what
        expected = reference.run(None, {"input": x, "factor": scales})[0]
        got = run(rewritten, {"input": x})
        # float32 in 0..255: the two orders of summation differ by rounding only.
        np.testing.assert_allclose(got, expected, rtol=0, atol=0.01)


@pytest.mark.parametrize("name,scale", [("srcnn3", 3), ("srcnn3", 4), ("srcnn", 3), ("espcn", 3)])
def test_bundled_models_give_the_same_pictures(name, scale, photo):
    fast = sdk.Predictor(name, backend="ort-cpu")(photo, scale=scale)
    plain = sdk.Predictor(name, backend="ort-cpu", optimize=False)(photo, scale=scale)
    diff = np.abs(fast.astype(np.int16) - plain)
    assert fast.shape == plain.shape and diff.max() <= 1
    assert (diff > 0).mean() < 0.01  # a level off only where a value sat on a rounding boundary


# -- the cache --------------------------------------------------------------------------------------


def test_the_cache_key_covers_content_factor_and_pass_version():
    base = OptimizeKey("a" * 64, (("factor", (1.0, 1.0, 3.0, 3.0)),), 1)
    assert (
        len(
            {
                base.digest,
                OptimizeKey("b" * 64, base.factor, 1).digest,
                OptimizeKey(base.model_sha256, (("factor", (1.0, 1.0, 2.0, 2.0)),), 1).digest,
                OptimizeKey(base.model_sha256, None, 1).digest,
                OptimizeKey(base.model_sha256, base.factor, 2).digest,
            }
        )
        == 5
    )
    assert OptimizeKey("a" * 64, base.factor, 1).digest == base.digest


def test_the_pass_runs_once_per_model_and_factor(runtime_model, tmp_path, monkeypatch):
    model = Model(runtime_model)
    first = optimized_model(model, {"factor": np.array([1, 1, 3, 3], np.float32)}, tmp_path)
    assert first is not None and first.path.parent == tmp_path / "optimized"
    assert [i.name for i in first.inputs] == ["input"]  # the factor is a constant now
    monkeypatch.setattr(passes, "optimise", lambda proto: pytest.fail("the cached result was not reused"))
    again = optimized_model(model, {"factor": np.array([1, 1, 3, 3], np.float32)}, tmp_path)
    assert again.path == first.path
    # Another factor, another model file, another pass version: each needs its own run.
    for change in ("factor", "content", "version"):
        calls = []
        monkeypatch.setattr(passes, "optimise", lambda proto: calls.append(1) or optimise(proto))
        factor = np.array([1, 1, 2, 2] if change == "factor" else [1, 1, 3, 3], np.float32)
        target = model
        if change == "content":
            target = Model(graphs.save(graphs.runtime_scale_model(seed=7), tmp_path / "retrained.onnx"))
        if change == "version":
            monkeypatch.setattr(passes, "PASS_VERSION", PASS_VERSION + 1)
        result = optimized_model(target, {"factor": factor}, tmp_path)
        assert calls == [1], change
        assert result.path != first.path, change


def test_a_damaged_cache_entry_is_made_again(fixed_model, tmp_path):
    model = Model(fixed_model)
    first = optimized_model(model, None, tmp_path)
    key = OptimizeKey(model.sha256, None, PASS_VERSION)
    model_path, record_path = OptimizedCache(tmp_path).paths(key)
    assert first.path == model_path and json.loads(record_path.read_text())["changed"] is True
    model_path.unlink()  # the record says "changed" but the file is gone: not trusted
    assert optimized_model(model, None, tmp_path).path == model_path and model_path.is_file()
    record_path.write_text("{not json")
    assert optimized_model(model, None, tmp_path).path == model_path


# -- the opt-out and the per-factor sessions --------------------------------------------------------


class Recording:
    def __init__(self, monkeypatch):
        from deploy_sdk_backends.onnxruntime import OrtCpuBackend

        self.paths = []
        original = OrtCpuBackend.create_session

        def create(backend, model, device, options):
            assert "optimize" not in options  # the SDK's own option never reaches a backend
            self.paths.append(model.path)
            return original(backend, model, device, options)

        monkeypatch.setattr(OrtCpuBackend, "create_session", create)


def test_optimize_false_gives_the_backend_the_file_as_it_is(fixed_model, monkeypatch, photo):
    seen = Recording(monkeypatch)
    sdk.Predictor(fixed_model, backend="ort-cpu", optimize=False)(photo)
    assert seen.paths == [Model(fixed_model).path]
    sdk.Predictor(fixed_model, backend="ort-cpu")(photo)
    assert seen.paths[-1] != Model(fixed_model).path and seen.paths[-1].parent.name == "optimized"


def test_every_backend_takes_the_option_and_it_is_checked(fixed_model):
    assert sdk.Predictor(fixed_model, backend="auto", device="cpu", optimize=False).backend
    with pytest.raises(InputError, match="optimize"):
        sdk.Predictor(fixed_model, backend="ort-cpu", optimize="yes")


def test_runtime_scale_models_get_one_session_per_factor(runtime_model, monkeypatch, photo):
    seen = Recording(monkeypatch)
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    assert seen.paths == [Model(runtime_model).path]  # the model as it is, so a failure shows now
    for scale in (2, 3, 2, 4):
        assert predictor(photo, scale=scale).shape[0] == photo.shape[0] * scale
    assert len(seen.paths) == 4  # + one rewritten model each for 2, 3 and 4; the second 2 reused
    assert [dict(key)["factor"][2] for key in predictor.session.loaded_factors] == [3.0, 2.0, 4.0]
    assert predictor.session.providers == ["CPUExecutionProvider"]  # engine inspection still works


def test_run_with_the_factor_feed_still_works(runtime_model, photo):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    x = photo.transpose(2, 0, 1)[None].astype(np.float32)
    assert [i.name for i in predictor.inputs] == ["input", "factor"]
    for factor in ([1, 1, 2, 2], [1, 1, 2.5, 2.5]):  # 2.5: left alone, runs the original graph
        feeds = {"input": x, "factor": np.array(factor, np.float32)}
        out = predictor.run(feeds)["output"]
        np.testing.assert_allclose(out, run(Model(runtime_model).proto, feeds), rtol=0, atol=0.01)
    with pytest.raises(InputError, match="finite"):
        predictor.run({"input": x, "factor": np.array([1, 1, np.nan, np.nan], np.float32)})


def test_least_recently_used_factor_sessions_are_closed(runtime_model, photo):
    from sdk.optimize.session import MAX_SESSIONS

    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    for scale in range(1, MAX_SESSIONS + 3):
        predictor(photo[:8, :8], scale=scale)
    factors = [dict(key)["factor"][2] for key in predictor.session.loaded_factors]
    assert factors == [float(s) for s in range(3, MAX_SESSIONS + 3)]


def test_the_rewritten_model_declares_its_fixed_scale():
    from sdk.resolution import resolve

    rewritten = optimized_model(Model("srcnn3"), {"factor": np.array([1, 1, 4, 4], np.float32)})
    spec = resolve(rewritten).spec
    assert spec.scale == 4 and spec.scale_input is None
