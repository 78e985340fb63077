"""The ``mnn`` backend: MNN's CPU engine on a model converted from ONNX once and cached.

Why this engine: the community's super-resolution nets (Real-ESRGAN Compact, SPAN, ESRGAN) are
stacks of 3x3 convolutions, and MNN computes those with Winograd transforms (fewer multiplications
than the direct product) in a packed layout it keeps from one layer to the next, PReLU and SiLU
included. ONNX Runtime and OpenVINO run them as matrix products: at best the sgemm rate.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sdk import Availability, Backend, BackendUnavailableError, InputError, RawRunner, Session

OPTIONS = ("threads", "precision")
PRECISIONS = {"fp32": "high"}  # MNN's "high" keeps float32 end to end; its "low" is fp16/bf16


@contextlib.contextmanager
def _stdout_silenced():
    """MNN prints the CPU features it found to stdout from C++ when it loads: that would corrupt
    `sdk backends --json` and any caller's output. Silenced at the file-descriptor level."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@functools.lru_cache(maxsize=1)
def import_mnn():
    try:
        with _stdout_silenced():
            import MNN
    except ImportError as exc:
        raise BackendUnavailableError(f"MNN is not installed ({exc}): pip install sdk-mnn (it depends on MNN)") from exc
    return MNN


def converted(model, mnn) -> Path:
    """The model as an .mnn file, converted once per model content and MNN version, in a child
    process (a converter that crashes must not take the host with it)."""
    from sdk.files import atomic_file
    from sdk.optimize.cache import cache_root

    target = cache_root() / "mnn" / f"{model.sha256}-{mnn.version()}.mnn"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    command = [
        sys.executable,
        "-c",
        "import sys, _tools; _tools.mnnconvert(sys.argv)",
        "-f",
        "ONNX",
        "--modelFile",
        str(model.path),
        "--MNNModel",
        str(partial),
        "--bizCode",
        "deploy-sdk",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise BackendUnavailableError(
            f"MNN cannot convert {model.path.name}: {' / '.join(tail)}; run it with backend='ort-cpu' (or 'auto')"
        )
    with atomic_file(target) as out:
        out.write(partial.read_bytes())
    partial.unlink()
    return target


def session_config(options: Mapping[str, Any]) -> dict:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"unknown mnn option(s) {unknown}; the mnn backend takes {list(OPTIONS)}")
    precision = options.get("precision", "fp32")
    if precision not in PRECISIONS:
        # Another engine's precision: unavailable here, so backend="auto" goes on to that engine.
        raise BackendUnavailableError(f"mnn runs precision 'fp32' here, not {precision!r}")
    threads = options.get("threads")
    if threads is None:
        from sdk.devices import cpu_cores

        threads = cpu_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads={threads!r} must be a positive whole number")
    return {"numThread": threads, "precision": PRECISIONS[precision]}


class MnnSession(Session):
    """One MNN interpreter and session; resized when the input's shape changes, one call at a time."""

    def __init__(self, mnn, model, config: dict):
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise BackendUnavailableError(
                f"mnn runs models with one input and one output; {model.name} has "
                f"{[i.name for i in model.inputs]} -> {[o.name for o in model.outputs]}"
            )
        self._mnn = mnn
        with _stdout_silenced():
            self._interpreter = mnn.Interpreter(str(converted(model, mnn)))
            self._session = self._interpreter.createSession(config)
        self._input = self._interpreter.getSessionInput(self._session)
        self._shape: tuple | None = None
        self._lock = threading.Lock()
        self.inputs, self.outputs = tuple(model.inputs), tuple(model.outputs)
        self._output_name = model.outputs[0].name

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        mnn = self._mnn
        (array,) = feeds.values()
        array = np.ascontiguousarray(array, dtype=np.float32)
        with self._lock:
            if self._interpreter is None:
                raise BackendUnavailableError("this mnn session is closed; create a new Predictor")
            if array.shape != self._shape:
                self._interpreter.resizeTensor(self._input, array.shape)
                self._interpreter.resizeSession(self._session)
                self._shape = array.shape
            caffe = mnn.Tensor_DimensionType_Caffe
            self._input.copyFrom(mnn.Tensor(array.shape, mnn.Halide_Type_Float, array, caffe))
            self._interpreter.runSession(self._session)
            output = self._interpreter.getSessionOutput(self._session)
            shape = output.getShape()
            host = mnn.Tensor(shape, mnn.Halide_Type_Float, np.empty(shape, np.float32), caffe)
            output.copyToHostTensor(host)
            # The SDK post-processes outputs in place: each must be an array of its own.
            return {self._output_name: np.array(host.getNumpyData(), dtype=np.float32, copy=True)}

    def close(self) -> None:
        with self._lock:
            self._interpreter = self._session = self._input = None


class MnnBackend(Backend):
    """MNN's CPU engine. Priority 80, below ort-cpu and openvino: ``backend="auto"`` takes it where
    its trial on the model says it is the fastest (deploy-sdk's sdk.tuning)."""

    name = "mnn"
    devices = ("cpu",)
    options = OPTIONS
    priority = 80

    def _probe(self, device) -> Availability:
        try:
            mnn = import_mnn()
        except BackendUnavailableError as exc:
            return Availability.no(str(exc))
        return Availability.yes(mnn=mnn.version(), precision="fp32")

    def create_session(self, model, device, options: Mapping[str, Any]) -> Session:
        config = session_config(options)  # bad options fail before anything heavy happens
        return MnnSession(import_mnn(), model, config)

    def raw_runner(self, model, device, options: Mapping[str, Any]) -> RawRunner:
        session = MnnSession(import_mnn(), model, session_config(options))
        return RawRunner(session.run, dict, "bare MNN session (interpreter, resize, run, copy out)", session.close)
