"""The spec and pipeline without torch: declaring fields, sources, dtype casts, padding, errors."""

from __future__ import annotations

import json
import logging

import graphs
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdk
from sdk import cli
from sdk.model import Model
from sdk.pipeline import Pipeline
from sdk.resolution import resolve


def cast_model(dtype: int, layout: str = "NCHW", channels: int = 3, static: tuple | None = None) -> onnx.ModelProto:
    """A x2 model with `dtype` input and output that computes in float32 inside (Cast, conv, Cast)."""
    h, w = static or ("h", "w")
    shape = ["n", channels, h, w] if layout == "NCHW" else ["n", h, w, channels]
    out_shape = ["n", channels, "H", "W"] if layout == "NCHW" else ["n", "H", "W", channels]
    weight = np.zeros((channels, channels, 1, 1), np.float32)
    weight[range(channels), range(channels)] = 1.0
    nodes = [helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT)]
    source = "f"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]))
        source = "t"
    nodes += [
        helper.make_node("Conv", [source, "w"], ["c"]),
        helper.make_node("Resize", ["c", "", "scales"], ["u"], mode="nearest"),
    ]
    last = "u"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["u"], ["ut"], perm=[0, 2, 3, 1]))
        last = "ut"
    nodes.append(helper.make_node("Cast", [last], ["output"], to=dtype))
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    graph = helper.make_graph(
        nodes,
        "cast",
        [helper.make_tensor_value_info("input", dtype, shape)],
        [helper.make_tensor_value_info("output", dtype, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


class FakeSession:
    """Runs a nearest x2 upscale in numpy on whatever dtype it is fed, like an engine would."""

    def __init__(self, layout="NCHW"):
        self.layout, self.fed = layout, []

    def run(self, feeds):
        x = feeds["input"]
        self.fed.append(x)
        axes = (2, 3) if self.layout == "NCHW" else (1, 2)
        return {"output": x.repeat(2, axis=axes[0]).repeat(2, axis=axes[1])}


def test_bf16_feeds_are_cast_and_outputs_come_back_as_float32(tmp_path, photo):
    model = Model(graphs.save(cast_model(TensorProto.BFLOAT16), tmp_path / "bf16.onnx"))
    resolution = resolve(model, {"value_range": (0, 1)})
    assert resolution.spec.scale == 2 and resolution.sources["scale"] == "inferred"
    pipeline = Pipeline(resolution.spec, model)
    session = FakeSession()
    prepared = pipeline.prepare(photo[None], 2)
    out = pipeline.run_tensor(session, prepared.tensor, 2)
    assert session.fed[0].dtype == ml_dtypes.bfloat16 and out.dtype == np.float32
    image = pipeline.finish(out, prepared)[0]
    # bfloat16 keeps 8 bits of mantissa: values 0..1 come back within half a grey level or so.
    assert np.abs(image[::2, ::2].astype(int) - photo).max() <= 1


def test_bf16_on_onnxruntime_is_refused_clearly(tmp_path):
    path = graphs.save(cast_model(TensorProto.BFLOAT16), tmp_path / "bf16.onnx")
    with pytest.raises(sdk.SDKError, match="bfloat16") as refused:
        sdk.Predictor(path, backend="ort-cpu", pipeline={"value_range": (0, 1)})
    assert "convert the model" in str(refused.value)  # the error says what to do, not only what failed


def test_fp16_nhwc_model_on_onnxruntime(tmp_path, photo):
    path = graphs.save(cast_model(TensorProto.FLOAT16, layout="NHWC"), tmp_path / "fp16-nhwc.onnx")
    predictor = sdk.Predictor(path, backend="ort-cpu", pipeline={"value_range": (0, 1)})
    assert predictor.spec.layout == "NHWC" and predictor.spec_sources["layout"] == "inferred"
    out = predictor(photo)
    assert np.abs(out[::2, ::2].astype(int) - photo).max() <= 1


def test_padding_is_reflected_and_cropped(tmp_path, photo):
    model = Model(graphs.save(cast_model(TensorProto.FLOAT), tmp_path / "m.onnx"))
    pipeline = Pipeline(resolve(model, {"value_range": (0, 1), "multiple_of": 16}).spec, model)
    session = FakeSession()
    tensor = pipeline.prepare(photo[None, :19, :21], 2).tensor
    out = pipeline.run_tensor(session, tensor, 2)
    fed = session.fed[0]
    assert fed.shape == (1, 3, 32, 32) and out.shape == (1, 3, 38, 42)
    np.testing.assert_array_equal(fed[:, :, 19, :21], tensor[:, :, 17])  # reflection about the last row
    np.testing.assert_array_equal(out[:, :, ::2, ::2], tensor)


def test_static_size_is_known(tmp_path):
    model = Model(graphs.save(cast_model(TensorProto.FLOAT, static=(16, 16)), tmp_path / "s.onnx"))
    pipeline = Pipeline(resolve(model, {"value_range": (0, 1)}).spec, model)
    assert pipeline.static_size == (16, 16)
    with pytest.raises(sdk.InputError, match=r"16x16.*tile="):
        pipeline.feeds(np.zeros((1, 3, 20, 8), np.float32), 2)


@pytest.mark.parametrize(
    "declared, message",
    [
        ({"value_rnage": (0, 1)}, "unknown field"),
        ({"color": "cmyk"}, "color 'cmyk'"),
        ({"value_range": (1, 1)}, "two different"),
        ({"layout": "CHW"}, "layout"),
        ({"multiple_of": 0}, "multiple_of"),
        ([("value_range", (0, 1))], "must be a dict"),
    ],
)
def test_bad_declarations_are_input_errors(runtime_model, declared, message):
    with pytest.raises(sdk.InputError, match=message):
        sdk.Predictor(runtime_model, backend="ort-cpu", pipeline=declared)


def test_declared_fields_win_and_are_recorded(runtime_model):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu", pipeline={"value_range": (0, 1), "color": "BGR"})
    assert predictor.spec.color == "bgr" and predictor.spec.value_range == (0.0, 1.0)
    assert predictor.spec_sources["color"] == "declared" and predictor.spec_sources["scale_input"] == "inferred"
    # A declared fixed scale rules out the runtime input it would otherwise find.
    with pytest.raises(sdk.ModelError, match="cannot fill"):
        sdk.Predictor(runtime_model, backend="ort-cpu", pipeline={"scale": 2})


def test_metadata_with_new_fields_round_trips():
    spec = sdk.PipelineSpec(color="gray", value_range=(0, 1), output_range=(-1, 1), scale=1, multiple_of=8)
    assert sdk.PipelineSpec.from_json(spec.to_json()) == spec
    plain = sdk.PipelineSpec(scale=3)
    assert "multiple_of" not in json.loads(plain.to_json())  # neutral fields stay out of the file


def test_info_explains_what_to_declare(tmp_path, capsys):
    path = graphs.save(graphs.no_image_model(), tmp_path / "flat.onnx")
    assert cli.main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "cannot run this model" in out and "image_input" in out and "sdk annotate" in out


def test_info_shows_declared_fields(runtime_model, capsys):
    assert cli.main(["info", runtime_model, "--value-range", "0", "1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pipeline"]["value_range"] == [0.0, 1.0]
    assert info["pipeline_sources"]["value_range"] == "declared"
    assert info["pipeline_sources"]["color"] == "inferred" and "--color rgb" in info["pipeline_warning"]


def test_no_warning_when_everything_is_declared(runtime_model, caplog):
    with caplog.at_level(logging.WARNING, logger="sdk"):
        sdk.Predictor(runtime_model, backend="ort-cpu", pipeline={"color": "rgb", "value_range": (0, 255)})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_value_range_probe_on_the_trained_bundled_models():
    """What the README reports: clear on SRCNN (0..255), ambiguous on ESPCN, so it keeps nothing there."""
    from sdk.value_range import detect_value_range

    found = detect_value_range(sdk.Predictor("srcnn", backend="ort-cpu"))
    assert found.value_range == (0.0, 255.0)
    assert found.scores[(0.0, 255.0)] > 40 > found.scores[(0.0, 1.0)] + 20
    assert detect_value_range(sdk.Predictor("espcn", backend="ort-cpu")).value_range is None


def test_info_probe(capsys):
    assert cli.main(["info", "srcnn3", "--probe", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["probe"]["value_range"] == [0.0, 255.0] and "0..255" in info["probe"]["psnr_db"]


def test_the_uint8_conversion_is_rint_then_clip_exactly():
    """finish rounds by adding 1.5 * 2**23 and keeping the low byte; it must equal the documented
    np.clip(np.rint(x), 0, 255) everywhere: ties (to even), just off them, out of range, infinities,
    any layout (a transposed or sliced tensor has no low bytes to pick and is rounded as floats)."""
    from sdk.pipeline import to_pixels_nhwc

    ties = np.arange(-4, 260, 0.5, dtype=np.float32)
    around = np.concatenate([np.nextafter(ties, np.float32(-np.inf)), np.nextafter(ties, np.float32(np.inf))])
    odd = np.array([-0.0, 1e-45, -1e-45, 3e38, -3e38, np.inf, -np.inf, 2.0**22, -(2.0**22), 2.0**24 + 3], np.float32)
    noise = np.random.default_rng(0).uniform(-300, 600, 3000).astype(np.float32)
    values = np.concatenate([ties, around, odd, noise])
    values = values[: values.size // 6 * 6].reshape(1, 3, 2, -1)
    expected = np.clip(np.rint(values), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for flip in (False, True):
        want = expected[..., ::-1] if flip else expected
        got = to_pixels_nhwc(values.copy(), flip)
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
        nhwc = np.ascontiguousarray(values.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # as an NHWC model's output
        np.testing.assert_array_equal(to_pixels_nhwc(nhwc, flip), want)
        np.testing.assert_array_equal(to_pixels_nhwc(values.astype(np.float64), flip), want)
        deep = np.clip(np.rint(np.clip(values, 0, 255) * np.float32(65535 / 255)), 0, 65535).astype(np.uint16)
        deep = deep.transpose(0, 2, 3, 1)[..., ::-1] if flip else deep.transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(to_pixels_nhwc(values.copy(), flip, dtype=np.dtype(np.uint16)), deep)
