"""The trt backend as the SDK sees it: registration, the availability probe and its reasons, options,
lazy imports, and the small build helpers that need no TensorRT (progress lines, parser errors)."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys

import pytest

import deploy_sdk_backends.tensorrt as trt_backend
from deploy_sdk_backends.tensorrt import build
from deploy_sdk_backends.tensorrt.options import TrtOptions
from sdk.devices import GPU, Device
from sdk.errors import BackendUnavailableError, InputError

A100 = GPU(0, "NVIDIA A100-SXM4-80GB", (8, 0), 80 << 30)
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _probe(monkeypatch, tensorrt: bool, pycuda: bool, gpu: GPU | None):
    real = importlib.util.find_spec
    present = {"tensorrt": tensorrt, "pycuda": pycuda}
    monkeypatch.setattr(
        trt_backend.importlib.util,
        "find_spec",
        lambda name, *a: (real("json") if present[name] else None) if name in present else real(name, *a),
    )
    monkeypatch.setattr(trt_backend, "gpu", lambda device: gpu)
    return trt_backend.TensorRTBackend()._probe(Device("cuda", 0))


def test_trt_is_listed_with_a_precise_reason():
    """`sdk backends --json` lists trt; on a machine without TensorRT it says exactly what is missing."""
    out = subprocess.run(
        [sys.executable, "-m", "sdk", "backends", "--json"], capture_output=True, text=True, check=True
    )
    record = next(r for r in json.loads(out.stdout) if r["name"] == "trt")
    assert record["priority"] > next(r for r in json.loads(out.stdout) if r["name"] == "ort-cuda")["priority"]
    assert record["devices"] == ["cuda"] and record["load_error"] is None
    if not HAS_TENSORRT:
        assert not record["available"]
        assert "TensorRT is not installed: pip install 'deploy-sdk[trt]'" in record["reason"]


def test_every_missing_piece_is_named(monkeypatch):
    found = _probe(monkeypatch, tensorrt=False, pycuda=False, gpu=None)
    assert not found.ok
    assert "TensorRT is not installed" in found.reason and "pycuda is not installed" in found.reason
    assert "no CUDA GPU" in found.reason


def test_only_what_is_missing_is_named(monkeypatch):
    found = _probe(monkeypatch, tensorrt=False, pycuda=True, gpu=A100)
    assert found.reason == trt_backend.TENSORRT_MISSING
    found = _probe(monkeypatch, tensorrt=True, pycuda=False, gpu=A100)
    assert found.reason == trt_backend.PYCUDA_MISSING


def test_the_probe_does_not_load_tensorrt_when_no_gpu_could_use_it(monkeypatch):
    monkeypatch.setattr(build, "import_tensorrt", lambda: pytest.fail("imported tensorrt without a GPU"))
    assert not _probe(monkeypatch, tensorrt=True, pycuda=True, gpu=None).ok


def test_supported_compute_capability_per_release():
    assert build.minimum_compute_capability((10, 4)) == (7, 0)  # Volta still in
    assert build.minimum_compute_capability((10, 5)) == (7, 5)  # removed in 10.5
    assert build.minimum_compute_capability((11, 0)) == (7, 5)


def test_version_parsing():
    class Module:
        __version__ = "10.13.2.post1"

    assert build.version_of(Module) == (10, 13)
    assert build.version_of(object()) == (0, 0)


def test_trt_outranks_the_onnxruntime_backends():
    from deploy_sdk_backends.onnxruntime import OrtCudaBackend

    assert trt_backend.TensorRTBackend.priority > OrtCudaBackend.priority


def test_loading_the_plugin_imports_no_engine_library():
    code = (
        "import sys, sdk.plugins as p; p.load_plugins(); import deploy_sdk_backends.tensorrt; "
        "print(sorted(m for m in ('tensorrt', 'pycuda', 'onnxconverter_common') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: the explicit backend may run")
def test_asking_for_trt_without_it_raises_with_the_reason(runtime_model):
    from sdk import Predictor

    with pytest.raises(BackendUnavailableError, match="backend 'trt' cannot run.*TensorRT is not installed"):
        Predictor(runtime_model, backend="trt")


# -- options --------------------------------------------------------------------------------------------


def test_options_defaults_and_values(tmp_path):
    parsed = TrtOptions.parse({})
    assert (parsed.precision, parsed.max_engines, parsed.profile, parsed.cache_dir) == ("fp32", 4, None, None)
    parsed = TrtOptions.parse({"precision": "FP16", "cache_dir": str(tmp_path), "max_engines": 2, "progress": True})
    assert (parsed.precision, parsed.cache_dir, parsed.max_engines, parsed.progress) == ("fp16", tmp_path, 2, True)
    assert parsed.settings.precision == "fp16"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"intra_op_num_threads": 2}, "unknown TensorRT option.*precision"),
        ({"precision": "int8"}, "fp32, fp16"),
        ({"max_engines": 0}, "positive integer"),
        ({"workspace": "1GB"}, "positive integer"),
        ({"optimization_level": 9}, "0 to 5"),
        ({"lock_timeout": "soon"}, "seconds"),
    ],
)
def test_bad_options_name_the_fix(options, message):
    with pytest.raises(InputError, match=message):
        TrtOptions.parse(options)


def test_bad_options_are_reported_before_the_gpu_is_looked_for(runtime_model):
    from sdk.model import Model

    with pytest.raises(InputError, match="precision"):
        trt_backend.TensorRTBackend().create_session(Model(runtime_model), Device("cuda", 0), {"precision": "int4"})


# -- build helpers that need no TensorRT --------------------------------------------------------------------


def test_build_progress_reports_top_level_phases_with_elapsed_time():
    out, ticks = io.StringIO(), iter(range(0, 100, 5))
    progress = build.BuildProgress("srcnn3 (factor=[1, 1, 3, 3], fp16)", out, clock=lambda: next(ticks))
    progress.phase_start("Building engine", None, 3)
    progress.phase_start("Tactic search", "Building engine", 50)
    assert progress.step_complete("Tactic search", 7) is True  # nested: silent
    assert progress.step_complete("Building engine", 0) is True
    progress.phase_finish("Tactic search")
    progress.phase_finish("Building engine")
    lines = out.getvalue().splitlines()
    assert lines == [
        "[TensorRT     5 s] building srcnn3 (factor=[1, 1, 3, 3], fp16): Building engine ...",
        "[TensorRT    10 s] building srcnn3 (factor=[1, 1, 3, 3], fp16): Building engine 1/3",
        "[TensorRT    15 s] building srcnn3 (factor=[1, 1, 3, 3], fp16): Building engine done",
    ]


class _ParserError:
    """Shaped like TensorRT's IParserError; TensorRT < 10 lacks node_name/node_operator."""

    def __init__(self, desc, node, name=None, op=None):
        self._desc, self._node, self._name, self._op = desc, node, name, op

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def __getattr__(self, attr):
        values = {"node_name": self._name, "node_operator": self._op}
        if attr in values and values[attr] is not None:
            return lambda: values[attr]
        raise AttributeError(attr)


def test_parser_errors_name_the_node():
    nodes = [("up", "Resize"), ("conv1", "Conv")]
    assert (
        build.describe_parser_error(_ParserError("scales must be constant", 0), nodes)
        == "node 0 'up' (Resize): scales must be constant"
    )
    assert (
        build.describe_parser_error(_ParserError("bad weights", 1, "Conv_7", "Conv"), nodes)
        == "node 1 'Conv_7' (Conv): bad weights"
    )
    assert build.describe_parser_error(_ParserError("not an ONNX file", -1), nodes) == "not an ONNX file"
