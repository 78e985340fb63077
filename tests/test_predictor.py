"""The Predictor against a bare onnxruntime session: same numbers, one conversion."""

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

import sdk


def bare(model_path, feeds):
    """A bare onnxruntime session, no SDK: the reference the Predictor must equal."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def to_image(tensor):
    """The documented conversion: NCHW float 0..255 -> HxWx3 uint8, rounded and clipped."""
    return np.clip(np.rint(tensor[0]), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def nchw(image):
    return image.transpose(2, 0, 1)[None].astype(np.float32)


def assert_within_one_level(out, expected):
    """The optimisation pass computes the same function in another order: float rounding may move a
    value across a .5 boundary, never further (sdk.optimize's own tests bound the float error)."""
    assert out.shape == expected.shape
    assert np.abs(out.astype(np.int16) - expected).max() <= 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_runtime_scale_matches_bare_onnxruntime(runtime_model, photo, scale):
    factor = np.array([1, 1, scale, scale], np.float32)
    expected = to_image(bare(runtime_model, {"input": nchw(photo), "factor": factor}))
    # Unoptimised, the Predictor is the bare session plus the documented conversion, bit for bit.
    plain = sdk.Predictor(runtime_model, backend="ort-cpu", optimize=False)
    np.testing.assert_array_equal(plain(photo, scale=scale), expected)
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    out = predictor(photo, scale=scale)
    assert out.shape == (photo.shape[0] * scale, photo.shape[1] * scale, 3)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert_within_one_level(out, expected)


def test_fixed_scale_matches_bare_onnxruntime(fixed_model, photo):
    expected = to_image(bare(fixed_model, {"input": nchw(photo)}))
    plain = sdk.Predictor(fixed_model, backend="ort-cpu", optimize=False)
    np.testing.assert_array_equal(plain(photo), expected)
    predictor = sdk.Predictor(fixed_model, backend="ort-cpu")
    assert predictor.scale == 3
    out = predictor(photo)
    assert_within_one_level(out, expected)
    np.testing.assert_array_equal(predictor(photo, scale=3), out)


def test_y_channel_model_keeps_colour(y_model, photo):
    """A Y-only model: the chroma is upscaled outside, so a flat-colour image keeps its hue."""
    predictor = sdk.Predictor(y_model, backend="ort-cpu")
    out = predictor(photo)
    assert out.shape == (photo.shape[0] * 3, photo.shape[1] * 3, 3)
    # The model's own Y output, through the documented YCbCr conversion, must be what we return.
    ycbcr = np.asarray(Image.fromarray(photo).convert("YCbCr"), dtype=np.float32)
    y = bare(y_model, {"input": (ycbcr[..., 0] / 255.0)[None, None].astype(np.float32)})[0, 0] * 255.0
    got_y = np.asarray(Image.fromarray(out).convert("YCbCr"), dtype=np.float32)[..., 0]
    # PIL rounds each step to uint8 and out-of-gamut colours clip in RGB, so a few pixels move more.
    diff = np.abs(got_y - np.clip(y, 0, 255))
    assert np.percentile(diff, 99) <= 2 and diff.mean() < 0.6


def test_inputs_of_every_kind_give_the_same_result(runtime_model, photo, tmp_path):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    reference = predictor(photo, scale=2)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    np.testing.assert_array_equal(predictor(Image.fromarray(photo), scale=2), reference)
    np.testing.assert_array_equal(predictor(path, scale=2), reference)
    np.testing.assert_array_equal(predictor(str(path), scale=2), reference)
    bgr = predictor(np.ascontiguousarray(photo[..., ::-1]), scale=2, color="bgr")
    np.testing.assert_array_equal(bgr, reference[..., ::-1])
    rgba = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(predictor(rgba, scale=2), reference)


def test_grayscale_becomes_three_equal_channels(runtime_model, photo):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    gray = photo[..., 1]
    out = predictor(gray, scale=2)
    np.testing.assert_array_equal(out, predictor(np.dstack([gray] * 3), scale=2))
    np.testing.assert_array_equal(predictor(Image.fromarray(gray), scale=2), out)
    np.testing.assert_array_equal(predictor(gray[..., None], scale=2), out)


def test_predict_batch_equals_single_calls(runtime_model, photo):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    images = [photo, photo[::-1].copy(), photo[:20, :30].copy(), photo[:, ::-1].copy()]
    batch = predictor.predict_batch(images, scale=3, batch_size=3)
    assert len(batch) == len(images)
    for image, out in zip(images, batch):
        # Batched convolutions may sum in another order: one grey level at most.
        assert np.abs(out.astype(int) - predictor(image, scale=3)).max() <= 1


class _OneImageAtATime(sdk.backend.Session):
    """The engine run image by image, so that a batch's engine output is exactly its images' own and
    any difference left between predict_batch and single calls is the SDK's pre/post."""

    def __init__(self, session):
        self.session, self.inputs, self.outputs = session, session.inputs, session.outputs
        self.batches = []

    def run(self, feeds):
        image = next(name for name, value in feeds.items() if value.ndim == 4)
        self.batches.append(len(feeds[image]))
        runs = [self.session.run({**feeds, image: feeds[image][i : i + 1]}) for i in range(len(feeds[image]))]
        return {name: np.concatenate([run[name] for run in runs]) for name in runs[0]}


@pytest.mark.parametrize(
    "model, pipeline, color",
    [("espcn", None, "rgb"), ("espcn", None, "bgr"), ("srcnn", None, "rgb"), ("srcnn", {"value_range": [0, 1]}, "bgr")],
)
def test_predict_batch_pre_and_post_equal_single_calls_exactly(model, pipeline, color, photo):
    predictor = sdk.Predictor(model, backend="ort-cpu", pipeline=pipeline)
    predictor._session = engine = _OneImageAtATime(predictor._session)
    images = [photo, photo[::-1].copy(), photo[:, ::-1].copy(), (255 - photo)[:, :, ::-1].copy()]
    batch = predictor.predict_batch(images, scale=3, batch_size=4, color=color)
    assert engine.batches == [4]  # one batch through pre/post
    for image, out in zip(images, batch):
        np.testing.assert_array_equal(out, predictor(image, scale=3, color=color))


def test_tiles_stitch_to_the_whole_image(runtime_model, photo):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    whole = predictor(photo, scale=3)
    tiled = predictor(photo, scale=3, tile=17)
    assert tiled.shape == whole.shape
    assert np.abs(tiled.astype(int) - whole).max() <= 1


def test_run_gives_raw_tensors(runtime_model, photo):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu")
    feeds = {"input": nchw(photo), "factor": np.array([1, 1, 2, 2], np.float32)}
    out = predictor.run(feeds)
    np.testing.assert_allclose(out["output"], bare(runtime_model, feeds), rtol=1e-5, atol=1e-4)


def test_lifetime_and_repr(runtime_model, photo):
    with sdk.Predictor(runtime_model, backend="ort-cpu", device="cpu") as predictor:
        assert predictor.backend == "ort-cpu" and predictor.device == "cpu"
        assert repr(predictor) == "Predictor(model='srcnn3-like', backend='ort-cpu', device='cpu')"
    with pytest.raises(sdk.SDKError, match="closed"):
        predictor(photo, scale=2)
    predictor.close()  # twice is harmless


def test_options_reach_onnxruntime(runtime_model):
    predictor = sdk.Predictor(runtime_model, backend="ort-cpu", intra_op_num_threads=1)
    assert predictor.backend == "ort-cpu"
    with pytest.raises(sdk.InputError, match="unknown onnxruntime option"):
        sdk.Predictor(runtime_model, backend="ort-cpu", no_such_option=1)


def test_auto_picks_what_can_run_here(runtime_model):
    predictor = sdk.Predictor(runtime_model)
    available = [r for r in sdk.list_backends() if r.available]
    assert predictor.backend == max(available, key=lambda r: r.priority).name


def test_import_sdk_loads_no_engine():
    code = (
        "import sdk, sys; heavy = {'onnxruntime', 'tensorrt', 'pycuda', 'torch', 'openvino'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_per_scale_sizing_stays_bounded(runtime_model):
    """The footprint and margin a call looks up per scale: a flood of scales must not grow the cache."""
    from sdk import planning

    p = sdk.Predictor(runtime_model, backend="ort-cpu")
    plans = [p.plan((8, 8), scale) for scale in range(1, planning.SCALES_KEPT + 6)]
    assert not any(plan.tiled for plan in plans)
    assert 0 < len(p._planner._sizing) <= planning.SCALES_KEPT
    assert not p.plan((8, 8), 3).tiled and 3 in p._planner._sizing
