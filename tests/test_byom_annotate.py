"""`sdk annotate`: the pipeline goes into a copy, the weights stay as they are, nothing is overwritten."""

from __future__ import annotations

import hashlib
import json
import logging

import graphs
import numpy as np
import onnx
import pytest

import sdk
from sdk import cli


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def with_external_data(folder, name="model.onnx"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save_model(
        graphs.runtime_scale_model(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return path


def test_annotate_then_run_without_hints(runtime_model, tmp_path, photo, caplog, capsys):
    out = tmp_path / "declared.onnx"
    assert cli.main(["annotate", runtime_model, "-o", str(out), "--value-range", "0", "1", "--color", "rgb"]) == 0
    assert "wrote" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING, logger="sdk"):
        annotated = sdk.Predictor(out, backend="ort-cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert annotated.spec.value_range == (0.0, 1.0) and annotated.spec_sources["value_range"] == "metadata"
    declared = sdk.Predictor(runtime_model, backend="ort-cpu", pipeline={"value_range": (0, 1)})
    np.testing.assert_array_equal(annotated(photo, scale=2), declared(photo, scale=2))
    # Only the metadata changed: the graph (weights included) is the same.
    before, after = onnx.load(runtime_model), onnx.load(str(out))
    assert before.graph.SerializeToString() == after.graph.SerializeToString()
    assert json.loads({p.key: p.value for p in after.metadata_props}["sdk.pipeline"])["value_range"] == [0.0, 1.0]


def test_annotate_refuses_to_overwrite(runtime_model, tmp_path, capsys):
    original = digest(runtime_model)
    assert cli.main(["annotate", runtime_model, "-o", runtime_model, "--value-range", "0", "1"]) == 1
    assert "is the input model" in capsys.readouterr().err and digest(runtime_model) == original
    other = tmp_path / "taken.onnx"
    other.write_bytes(b"keep me")
    assert cli.main(["annotate", runtime_model, "-o", str(other)]) == 1
    assert other.read_bytes() == b"keep me"
    assert cli.main(["annotate", runtime_model, "-o", str(other), "--force"]) == 0
    assert sdk.Predictor(other, backend="ort-cpu").spec_sources["color"] == "metadata"


def test_annotate_in_place_with_force(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(open(graphs.save(graphs.fixed_scale_model(3), tmp_path / "src.onnx"), "rb").read())
    assert cli.main(["annotate", str(path), "-o", str(path), "--value-range", "0", "255", "--force"]) == 0
    assert sdk.Predictor(path, backend="ort-cpu").spec_sources["value_range"] == "metadata"


@pytest.mark.parametrize("where", ["same folder", "other folder"])
def test_external_data_keeps_working(tmp_path, photo, where):
    source = with_external_data(tmp_path / "src")
    weights = digest(tmp_path / "src" / "weights.bin")
    out = (tmp_path / "src" if where == "same folder" else tmp_path / "elsewhere" / "deep") / "annotated.onnx"
    assert cli.main(["annotate", str(source), "-o", str(out), "--value-range", "0", "255", "--color", "rgb"]) == 0
    expected = sdk.Predictor(source, backend="ort-cpu")(photo, scale=2)
    np.testing.assert_array_equal(sdk.Predictor(out, backend="ort-cpu")(photo, scale=2), expected)
    assert digest(tmp_path / "src" / "weights.bin") == weights
    assert digest(out.parent / "weights.bin") == weights


def test_annotate_refuses_a_bad_declaration(runtime_model, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert cli.main(["annotate", runtime_model, "-o", str(out), "--color", "gray"]) == 1
    assert "needs N x 1 x H x W" in capsys.readouterr().err and not out.exists()


def test_upscale_takes_the_pipeline_fields(runtime_model, tmp_path, photo):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(photo).save(source)
    out = tmp_path / "out.png"
    assert (
        cli.main(
            [
                "upscale",
                str(source),
                "-o",
                str(out),
                "--model",
                runtime_model,
                "--scale",
                "2",
                "--backend",
                "ort-cpu",
                "--value-range",
                "0",
                "1",
            ]
        )
        == 0
    )
    expected = sdk.Predictor(runtime_model, backend="ort-cpu", pipeline={"value_range": (0, 1)})(photo, scale=2)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
