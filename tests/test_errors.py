"""Every way a user can get it wrong gets an sdk error that says what to do."""

import graphs
import numpy as np
import pytest

import sdk


@pytest.fixture(scope="module")
def runtime(runtime_model):
    return sdk.Predictor(runtime_model, backend="ort-cpu")


@pytest.fixture(scope="module")
def fixed(fixed_model):
    return sdk.Predictor(fixed_model, backend="ort-cpu")


def test_missing_file(tmp_path):
    with pytest.raises(sdk.ModelError, match="does not exist.*bundled model name"):
        sdk.Predictor(tmp_path / "nope.onnx")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(sdk.ModelError, match="export it again"):
        sdk.Predictor(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(sdk.ModelError, match="no ONNX graph"):
        sdk.Predictor(path)


def test_truncated_onnx(runtime_model, tmp_path):
    data = open(runtime_model, "rb").read()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(sdk.ModelError, match="truncated|export it again"):
        sdk.Predictor(path)


def test_model_without_image_input(tmp_path):
    path = graphs.save(graphs.no_image_model(), tmp_path / "flat.onnx")
    with pytest.raises(sdk.ModelError, match="no image-like input"):
        sdk.Predictor(path)


def test_unknown_backend(runtime_model):
    with pytest.raises(sdk.BackendUnavailableError, match="unknown backend 'nope'.*ort-cpu"):
        sdk.Predictor(runtime_model, backend="nope")


def test_unavailable_backend_never_falls_back(runtime_model):
    with pytest.raises(sdk.BackendUnavailableError, match="ort-cuda.*cannot run"):
        sdk.Predictor(runtime_model, backend="ort-cuda")


def test_backend_on_a_device_it_does_not_serve(runtime_model):
    with pytest.raises(sdk.BackendUnavailableError, match="runs on cpu, not cuda"):
        sdk.Predictor(runtime_model, backend="ort-cpu", device="cuda")


def test_bad_device_string(runtime_model):
    with pytest.raises(sdk.InputError, match="unknown device 'gpu'"):
        sdk.Predictor(runtime_model, device="gpu")


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 8, 3), np.float32), "dtype is float32; pass uint8"),
        (np.zeros((8, 8, 3), np.int32), "dtype is int32; pass uint8 pixels 0..255 or uint16"),
        (np.zeros((8, 8, 5), np.uint8), "shape is \\(8, 8, 5\\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), "shape is \\(2, 8, 8, 3\\)"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.zeros((8, 0), np.uint8), "empty"),
        ([[1, 2], [3, 4]], "cannot read an image from list"),
        ("/no/such/image.png", "does not exist"),
    ],
)
def test_bad_images(runtime, image, message):
    with pytest.raises(sdk.InputError, match=message):
        runtime(image, scale=2)


def test_unreadable_image_file(runtime, tmp_path):
    path = tmp_path / "fake.png"
    path.write_bytes(b"not a png")
    with pytest.raises(sdk.InputError, match="not an image Pillow can read"):
        runtime(path, scale=2)


def test_bad_colour_order(runtime):
    with pytest.raises(sdk.InputError, match="color='hsv'"):
        runtime(np.zeros((4, 4, 3), np.uint8), scale=2, color="hsv")


def test_missing_scale_for_runtime_scale_model(runtime):
    with pytest.raises(sdk.InputError, match="takes its scale at run time: pass scale="):
        runtime(np.zeros((4, 4, 3), np.uint8))


def test_scale_that_differs_from_a_fixed_model(fixed):
    with pytest.raises(sdk.InputError, match="upscales by 3 only"):
        fixed(np.zeros((4, 4, 3), np.uint8), scale=2)


@pytest.mark.parametrize("scale", [2.5, "3", True, 1j])
def test_non_integer_scale(runtime, scale):
    with pytest.raises(sdk.InputError, match="not an integer"):
        runtime(np.zeros((4, 4, 3), np.uint8), scale=scale)


@pytest.mark.parametrize("scale", [0, -2])
def test_non_positive_scale(runtime, scale):
    with pytest.raises(sdk.InputError, match="positive integer"):
        runtime(np.zeros((4, 4, 3), np.uint8), scale=scale)


def test_integral_float_scale_is_fine(runtime):
    assert runtime(np.zeros((4, 4, 3), np.uint8), scale=2.0).shape == (8, 8, 3)


@pytest.mark.parametrize("tile", [-1, 2.5, "big", True])
def test_bad_tile(runtime, tile):
    with pytest.raises(sdk.InputError, match="tile="):
        runtime(np.zeros((4, 4, 3), np.uint8), scale=2, tile=tile)


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"input": np.zeros((1, 3, 4, 4), np.float32)}, "missing \\['factor'\\]"),
        (
            {"input": np.zeros((1, 3, 4, 4), np.float32), "factor": np.ones(4, np.float32), "x": np.ones(1)},
            "unknown \\['x'\\]",
        ),
        (
            {"input": np.zeros((1, 4, 4, 3), np.float32), "factor": np.ones(4, np.float32)},
            "shape \\[1, 4, 4, 3\\].*\\['\\?', 3",
        ),
        ({"input": np.zeros((3, 4, 4), np.float32), "factor": np.ones(4, np.float32)}, "shape \\[3, 4, 4\\]"),
        (
            {"input": np.zeros((1, 3, 4, 4), np.float64), "factor": np.ones(4, np.float32)},
            "float64; the model wants float32",
        ),
        ({"input": [[0.0]], "factor": np.ones(4, np.float32)}, "is a list; pass a numpy array"),
        ([("input", 1)], "must be a dict"),
    ],
)
def test_bad_raw_feeds(runtime, feeds, message):
    with pytest.raises(sdk.InputError, match=message):
        runtime.run(feeds)


def test_a_bad_image_in_a_batch_costs_nothing(runtime):
    good = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(sdk.InputError, match=r"images\[1\]: image dtype"):
        runtime.predict_batch([good, good.astype(np.float32), good], scale=2)


def test_model_that_ignores_its_scale_is_caught(tmp_path):
    """The tutorial's trap: a 'runtime-scale' model with its factor baked in."""
    import json

    meta = {"sdk.pipeline": json.dumps({"scale_input": None, "scale": 2})}
    path = graphs.save(graphs.fixed_scale_model(3, metadata=meta), tmp_path / "baked.onnx")
    with pytest.raises(sdk.ModelError, match="expected \\(1, 3, 8, 8\\)"):
        sdk.Predictor(path, backend="ort-cpu")(np.zeros((4, 4, 3), np.uint8))


def test_bad_pipeline_metadata(tmp_path):
    path = graphs.save(graphs.runtime_scale_model(metadata={"sdk.pipeline": "{not json"}), tmp_path / "m.onnx")
    with pytest.raises(sdk.ModelError, match="'sdk.pipeline' metadata is not valid"):
        sdk.Predictor(path)
