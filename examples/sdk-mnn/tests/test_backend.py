"""sdk-mnn as a user gets it: discovered by deploy-sdk, same pictures as ONNX Runtime, clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk import BackendUnavailableError, InputError, Predictor


def _prelu_net(path, channels: int = 16, two_inputs: bool = False) -> str:
    """conv 3x3 + per-channel PReLU, twice, conv to 3*4 channels + DepthToSpace(2): Compact in miniature."""
    rng = np.random.default_rng(0)
    inits, nodes, source = [], [], "input"
    for index, (cin, cout) in enumerate(((3, channels), (channels, channels), (channels, 12))):
        weight = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, f"w{index}"),
            numpy_helper.from_array(np.zeros(cout, np.float32), f"b{index}"),
        ]
        nodes.append(helper.make_node("Conv", [source, f"w{index}", f"b{index}"], [f"c{index}"], pads=[1, 1, 1, 1]))
        source = f"c{index}"
        if index < 2:
            slopes = rng.uniform(0, 0.3, (cout, 1, 1)).astype(np.float32)
            inits.append(numpy_helper.from_array(slopes, f"a{index}"))
            nodes.append(helper.make_node("PRelu", [source, f"a{index}"], [f"p{index}"]))
            source = f"p{index}"
    nodes.append(helper.make_node("DepthToSpace", [source], ["output"], blocksize=2, mode="CRD"))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])]
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(
        nodes,
        "prelu-net",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "H", "W"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


PIPELINE = {"value_range": (0, 1), "scale": 2, "color": "rgb"}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return _prelu_net(tmp_path_factory.mktemp("models") / "prelu-net.onnx")


def test_sdk_finds_the_backend_and_its_json_stays_clean():
    done = subprocess.run(
        [sys.executable, "-m", "sdk", "backends", "--json"], capture_output=True, text=True, timeout=120
    )
    records = {r["name"]: r for r in json.loads(done.stdout)}  # MNN's banner must not reach stdout
    assert records["mnn"]["available"] and records["mnn"]["distribution"] == "sdk-mnn"


def test_the_same_pictures_as_onnx_runtime_at_every_size(net):
    rng = np.random.default_rng(1)
    with (
        Predictor(net, backend="mnn", pipeline=PIPELINE) as mnn,
        Predictor(net, backend="ort-cpu", pipeline=PIPELINE) as ort,
    ):
        assert mnn.backend == "mnn"
        for shape in ((24, 32, 3), (17, 9, 3), (24, 32, 3)):  # resized, then back
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            difference = np.abs(mnn(image).astype(int) - ort(image).astype(int))
            assert difference.max() <= 1


def test_what_it_cannot_run_is_unavailable_so_auto_moves_on(net, tmp_path):
    from sdk_mnn import MnnBackend

    from sdk.devices import Device
    from sdk.model import Model

    two = Model(_prelu_net(tmp_path / "two-inputs.onnx", two_inputs=True))
    with pytest.raises(BackendUnavailableError, match="one input"):
        MnnBackend().create_session(two, Device("cpu"), {})
    with pytest.raises(BackendUnavailableError, match="precision"):
        Predictor(net, backend="mnn", pipeline=PIPELINE, precision="int8")
    with pytest.raises(InputError, match="unknown mnn option"):
        Predictor(net, backend="mnn", pipeline=PIPELINE, turbo=True)


def test_auto_times_it_against_the_other_engines(net):
    with Predictor(net, pipeline=PIPELINE, tune=True) as predictor:
        assert "mnn" in {e["backend"] for e in predictor.ranking.entries}
        assert predictor.backend == predictor.ranking.entries[0]["backend"]
