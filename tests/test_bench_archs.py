"""The benchmark on the community's architectures: the torch rows from the user's module, FLOPs of
graphs whose shapes are computed at run time, and a smoke run of ``compare.py --arch``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.errors import SDKError

ROOT = Path(__file__).resolve().parent.parent
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _windowed_matmul_model() -> onnx.ModelProto:
    """input (1, 3, H, W) -> reshape to (H // 4, 4, -1) with H // 4 computed from Shape (as a traced
    window partition does) -> MatMul by a (24, 3) weight (so W must be 8), reshaped as an image."""
    weight = numpy_helper.from_array(np.ones((24, 3), np.float32), "w")
    four = numpy_helper.from_array(np.array(4, np.int64), "four")
    index = numpy_helper.from_array(np.array(2, np.int64), "index")
    tail = numpy_helper.from_array(np.array([4, -1], np.int64), "tail")
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Gather", ["shape", "index"], ["h"]),
        helper.make_node("Div", ["h", "four"], ["windows"]),
        helper.make_node("Unsqueeze", ["windows", "zero"], ["windows1"]),
        helper.make_node("Concat", ["windows1", "tail"], ["target"], axis=0),
        helper.make_node("Reshape", ["input", "target"], ["tokens"]),
        helper.make_node("MatMul", ["tokens", "w"], ["y"]),
        helper.make_node("Reshape", ["y", "image"], ["output"]),
    ]
    zero = numpy_helper.from_array(np.array([0], np.int64), "zero")
    image = numpy_helper.from_array(np.array([1, 3, 2, 4], np.int64), "image")
    graph = helper.make_graph(
        nodes,
        "windows",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "a", "b"])],
        [weight, four, index, tail, zero, image],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_flops_are_counted_where_shapes_are_computed_from_shape_ops(tmp_path):
    from sdk.bench.flops import model_flops
    from sdk.model import Model

    path = tmp_path / "windows.onnx"
    onnx.save(_windowed_matmul_model(), str(path))
    # (8/4) x 4 x 24 @ 24 x 3 at 8x8: 2 * (2 * 4 * 3) * 24 FLOPs.
    assert model_flops(Model(str(path)), 8, 1, 1, {"scale": 1}) == 2 * 2 * 4 * 3 * 24


def test_a_torch_module_spec_names_a_file_or_module_and_a_builder(tmp_path):
    from sdk.bench.torch_module import load_builder, split_spec

    assert split_spec("benchmarks/devkit/archs.py:compact") == ("benchmarks/devkit/archs.py", "compact")
    for bad in ("archs.py", ":compact", "archs.py:not a name"):
        with pytest.raises(SDKError, match="FILE.py:NAME"):
            split_spec(bad)
    source = tmp_path / "builders.py"
    source.write_text("def build():\n    return 42\n")
    assert load_builder(f"{source}:build")() == 42
    with pytest.raises(SDKError, match="no callable 'other'"):
        load_builder(f"{source}:other")
    with pytest.raises(SDKError, match="no such file"):
        load_builder(f"{tmp_path / 'missing.py'}:build")
    assert load_builder("json:dumps") is json.dumps


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason="the torch rows and the export need torch (pip install torch==2.13.0)")
def test_compare_runs_a_community_architecture_against_its_torch_module(tmp_path):
    """Smoke mode: Compact exported by the devkit, 16x16, one call per row; the engines agree with
    the PyTorch module they were exported from."""
    out = tmp_path / "arch.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "compare.py"),
        "--arch",
        "compact",
        "--size",
        "16",
        "--backends",
        "ort-cpu",
        "--warmup",
        "0",
        "--runs",
        "1",
        "--stage-runs",
        "0",
        "--quiet",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(out.read_text())
    assert document["config"]["pipeline"]["value_range"] == [0.0, 1.0]
    assert document["config"]["torch_module"].endswith("archs.py:compact")
    rows = {(r["kind"], r["backend"]): r for r in document["results"]}
    assert rows[("reference", "torch")]["available"], rows[("reference", "torch")]["reason"]
    assert rows[("sdk", "ort-cpu")]["passed"] is True
    assert rows[("sdk", "ort-cpu")]["gflop"] == pytest.approx(81.16e9 * (16 / 256) ** 2 / 1e9, rel=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason="the architectures are exported with torch (pip install torch==2.13.0)")
def test_the_levers_script_measures_variants_side_by_side(tmp_path):
    """Smoke mode of benchmarks/levers_archs.py: Compact at 16x16, one call per variant."""
    out = tmp_path / "levers.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "levers_archs.py"), "--arch", "compact", "--size", "16"]
    command += ["--runs", "1", "--warmup", "0", "--only", "1 thread", "--md", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ort")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| ort: original",
        "| ort: optimised",
        "| ort: optimised, 1 thread",
    ]
