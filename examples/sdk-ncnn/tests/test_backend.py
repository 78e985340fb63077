"""sdk-ncnn as a user gets it: discovered by deploy-sdk, same pictures as ONNX Runtime, clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk import BackendUnavailableError, InputError, Predictor


def _span_block_net(path, channels: int = 16, two_inputs: bool = False, static: bool = False) -> str:
    """SPAN and Compact in miniature: conv 3x3, per-channel PReLU, conv, SiLU, sigmoid(x) - 0.5 as an
    attention on a residual add, conv to 3*4 channels and DepthToSpace(2)."""
    rng = np.random.default_rng(0)
    inits = []

    def conv(name, source, cin, cout):
        weight = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
        inits.extend(
            [
                numpy_helper.from_array(weight, f"{name}.w"),
                numpy_helper.from_array(rng.random(cout, np.float32) * 0.1, f"{name}.b"),
            ]
        )
        return helper.make_node("Conv", [source, f"{name}.w", f"{name}.b"], [name], pads=[1, 1, 1, 1])

    inits.append(numpy_helper.from_array(rng.uniform(0, 0.3, (channels, 1, 1)).astype(np.float32), "slopes"))
    inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
    nodes = [
        conv("c0", "input", 3, channels),
        helper.make_node("PRelu", ["c0", "slopes"], ["p0"]),
        conv("c1", "p0", channels, channels),
        helper.make_node("Sigmoid", ["c1"], ["s1"]),
        helper.make_node("Mul", ["c1", "s1"], ["silu"]),
        helper.make_node("Sigmoid", ["silu"], ["gate"]),
        helper.make_node("Sub", ["gate", "half"], ["attention"]),
        helper.make_node("Add", ["silu", "p0"], ["residual"]),
        helper.make_node("Mul", ["residual", "attention"], ["mixed"]),
        conv("c2", "mixed", channels, 12),
        helper.make_node("DepthToSpace", ["c2"], ["output"], blocksize=2, mode="CRD"),
    ]
    shape = [1, 3, 24, 32] if static else ["n", 3, "h", "w"]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)]
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    out_shape = [1, 3, 48, 64] if static else ["n", 3, "H", "W"]
    graph = helper.make_graph(
        nodes, "span-block", inputs, [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


PIPELINE = {"value_range": (0, 1), "scale": 2, "color": "rgb"}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return _span_block_net(tmp_path_factory.mktemp("models") / "span-block.onnx")


def test_sdk_finds_the_backend_and_its_json_stays_clean():
    done = subprocess.run(
        [sys.executable, "-m", "sdk", "backends", "--json"], capture_output=True, text=True, timeout=120
    )
    records = {r["name"]: r for r in json.loads(done.stdout)}
    assert records["ncnn"]["available"] and records["ncnn"]["distribution"] == "sdk-ncnn"


def test_without_the_converter_the_backend_says_how_to_get_it(monkeypatch):
    import importlib.util

    from sdk_ncnn import NcnnBackend

    from sdk.devices import Device

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pnnx" else real(name, *a))
    found = NcnnBackend()._probe(Device("cpu"))
    assert not found.ok and "pip install --no-deps pnnx" in found.reason


def test_the_same_pictures_as_onnx_runtime_at_every_size(net):
    rng = np.random.default_rng(1)
    with (
        Predictor(net, backend="ncnn", pipeline=PIPELINE) as ncnn,
        Predictor(net, backend="ort-cpu", pipeline=PIPELINE) as ort,
    ):
        assert ncnn.backend == "ncnn"
        for shape in ((24, 32, 3), (17, 9, 3), (40, 56, 3)):  # odd sizes, and larger than the traced ones
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            difference = np.abs(ncnn(image).astype(int) - ort(image).astype(int))
            assert difference.max() <= 1


def test_float32_weights_not_pnnx_default_float16(net):
    """pnnx stores weights as float16 unless told otherwise: the raw outputs would then differ from
    ONNX Runtime's by ~1e-3 of their range, not by float32 rounding."""
    from sdk_ncnn import NcnnBackend

    from sdk.devices import Device
    from sdk.model import Model

    model = Model(net)
    x = np.random.default_rng(2).random((2, 3, 20, 28), dtype=np.float32)  # a batch runs image by image
    session = NcnnBackend().create_session(model, Device("cpu"), {"threads": 1})
    ours = session.run({"input": x})["output"]
    import onnxruntime

    reference = onnxruntime.InferenceSession(net, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert ours.shape == reference.shape == (2, 3, 40, 56)
    assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max()


def test_calls_from_several_threads_at_once(net):
    from sdk_ncnn import NcnnBackend

    from sdk.devices import Device
    from sdk.model import Model

    backend = NcnnBackend()
    options = backend.concurrent_options(Device("cpu"), 2)
    session = backend.create_session(Model(net), Device("cpu"), options)
    images = [np.random.default_rng(i).random((1, 3, 16 + i, 20), dtype=np.float32) for i in range(4)]
    alone = [session.run({"input": image})["output"] for image in images]
    together: dict[int, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda i=i: together.__setitem__(i, session.run({"input": images[i]})["output"]))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, expected in enumerate(alone):
        np.testing.assert_array_equal(together[i], expected)
    session.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        session.run({"input": images[0]})


def test_the_conversion_is_cached_and_leaves_the_model_folder_alone(net, tmp_path):
    import os
    import shutil

    from sdk_ncnn.backend import import_ncnn
    from sdk_ncnn.convert import converted

    from sdk.model import Model

    folder = tmp_path / "user-models"
    folder.mkdir()
    mine = Model(shutil.copy(net, folder / "mine.onnx"))
    first = converted(mine, import_ncnn())
    stamp = os.stat(first.param).st_mtime_ns
    assert converted(mine, import_ncnn()).param == first.param and os.stat(first.param).st_mtime_ns == stamp
    assert sorted(p.name for p in folder.iterdir()) == ["mine.onnx"]  # no pnnx by-products beside it
    assert sorted(p.name for p in first.param.parent.iterdir()) == ["model.bin", "model.param"]


def test_a_static_input_size_converts_as_declared(tmp_path):
    fixed = _span_block_net(tmp_path / "fixed.onnx", static=True)
    image = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    with (
        Predictor(fixed, backend="ncnn", pipeline=PIPELINE) as ncnn,
        Predictor(fixed, backend="ort-cpu", pipeline=PIPELINE) as ort,
    ):
        assert np.abs(ncnn(image).astype(int) - ort(image).astype(int)).max() <= 1


def test_what_it_cannot_run_is_unavailable_so_auto_moves_on(net, tmp_path):
    from sdk_ncnn import NcnnBackend

    from sdk.devices import Device
    from sdk.model import Model

    two = Model(_span_block_net(tmp_path / "two-inputs.onnx", two_inputs=True))
    with pytest.raises(BackendUnavailableError, match="one input"):
        NcnnBackend().create_session(two, Device("cpu"), {})
    with pytest.raises(BackendUnavailableError, match="precision"):
        Predictor(net, backend="ncnn", pipeline=PIPELINE, precision="int8")
    with pytest.raises(InputError, match="unknown ncnn option"):
        Predictor(net, backend="ncnn", pipeline=PIPELINE, turbo=True)


def test_a_model_pnnx_converts_wrongly_is_refused_not_run(tmp_path, monkeypatch):
    """pnnx turns this Einsum into a net that gives zeros of another shape, without a word: the check
    against ONNX Runtime refuses it with a clear BackendUnavailableError, and nothing is cached."""
    from sdk_ncnn import NcnnBackend

    from sdk.devices import Device
    from sdk.model import Model
    from sdk.optimize.cache import cache_root

    nodes = [helper.make_node("Einsum", ["input", "input"], ["output"], equation="nchw,nchw->nchw")]
    graph = helper.make_graph(
        nodes,
        "einsum",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "einsum.onnx"))
    model = Model(tmp_path / "einsum.onnx")
    # ncnn aborts on this conversion within a second, or (4 times in 10 here) spins without end: the
    # check's time limit turns that into the same refusal (shortened here to keep the test short).
    monkeypatch.setattr("sdk_ncnn.convert.CHECK_TIMEOUT_S", 5)
    with pytest.raises(BackendUnavailableError, match="conversion of einsum|cannot convert einsum"):
        NcnnBackend().create_session(model, Device("cpu"), {})
    folder = cache_root() / "ncnn"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".converting-")]
    assert not [p for p in folder.glob(f"{model.sha256}-*") if p.suffix != ".refused"]  # nothing kept to run


def test_a_refusal_is_remembered_and_a_time_limit_is_not(net, tmp_path, monkeypatch):
    from sdk_ncnn import NcnnBackend, convert

    from sdk.devices import Device
    from sdk.model import Model

    calls = []

    def refuse(model, files):
        calls.append(model.name)
        raise reason

    monkeypatch.setattr(convert, "_checked_in_child", refuse)
    for name, reason, remembered in (
        ("refused", BackendUnavailableError("computes something else"), True),
        ("timed-out", convert.TimedOut("ran over 120 s"), False),
    ):
        proto = onnx.load(net)
        proto.doc_string = name  # other content, so a conversion of its own
        onnx.save(proto, str(tmp_path / f"{name}.onnx"))
        model = Model(tmp_path / f"{name}.onnx")
        for _ in range(2):
            with pytest.raises(BackendUnavailableError, match=str(reason)):
                NcnnBackend().create_session(model, Device("cpu"), {})
        assert calls.count(name) == (1 if remembered else 2), name


def test_a_conversion_that_computes_something_else_is_refused(net, tmp_path):
    """The check itself, on a conversion that runs but is off by 1% (its weights scaled)."""
    from sdk_ncnn.backend import import_ncnn
    from sdk_ncnn.check import check_against_onnxruntime
    from sdk_ncnn.convert import Converted, converted

    from sdk.model import Model

    model = Model(net)
    good = converted(model, import_ncnn())
    check_against_onnxruntime(import_ncnn(), model, good)  # the real conversion passes
    # float32 blobs carry a zero flag word ahead of their data, which scaling leaves zero
    off = tmp_path / "off.bin"
    (np.fromfile(good.weights, np.float32) * 1.01).astype(np.float32).tofile(off)
    with pytest.raises(BackendUnavailableError, match="computes something else"):
        check_against_onnxruntime(import_ncnn(), model, Converted(good.param, off, good.input_blob, good.output_blob))


def test_auto_times_it_against_the_other_engines(net):
    with Predictor(net, pipeline=PIPELINE, tune=True) as predictor:
        assert "ncnn" in {e["backend"] for e in predictor.ranking.entries}
        assert predictor.backend == predictor.ranking.entries[0]["backend"]
