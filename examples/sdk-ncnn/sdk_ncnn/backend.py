"""The ``ncnn`` backend: ncnn's CPU engine on a model converted from ONNX once and cached.

Why this engine: the community's super-resolution nets (Real-ESRGAN Compact, SPAN, ESRGAN) are
stacks of 3x3 convolutions. ONNX Runtime and OpenVINO compute them as matrix products, at best at the
machine's sgemm rate; ncnn computes them with Winograd transforms (F(2,3), F(4,3), F(6,3): up to 5x
fewer multiplications) whose AVX-512 kernels are fast enough to go beyond that rate (MNN's are not,
on this CPU: see docs/benchmarks.md). float32 throughout: weights, storage and arithmetic.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk import Availability, Backend, BackendUnavailableError, InputError, RawRunner, Session

from .convert import converted, load_net, pnnx_program, run_image

OPTIONS = ("threads", "precision")
PRECISIONS = ("fp32",)


@functools.lru_cache(maxsize=1)
def import_ncnn():
    try:
        import ncnn
    except ImportError as exc:
        raise BackendUnavailableError(
            f"ncnn is not installed ({exc}): pip install sdk-ncnn (it depends on ncnn)"
        ) from exc
    return ncnn


def session_threads(options: Mapping[str, Any]) -> int:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"unknown ncnn option(s) {unknown}; the ncnn backend takes {list(OPTIONS)}")
    precision = options.get("precision", "fp32")
    if precision not in PRECISIONS:
        # Another engine's precision: unavailable here, so backend="auto" goes on to that engine.
        raise BackendUnavailableError(f"ncnn runs precision 'fp32' here, not {precision!r}")
    threads = options.get("threads")
    if threads is None:
        from sdk.devices import cpu_cores

        threads = cpu_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads={threads!r} must be a positive whole number")
    return threads


class NcnnSession(Session):
    """One ncnn Net; each call takes an extractor of its own, so calls from several threads run at once
    (each on ``threads`` of the cores). ncnn runs one image at a time: a batch runs image by image."""

    def __init__(self, ncnn, model, threads: int):
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise BackendUnavailableError(
                f"ncnn runs models with one input and one output; {model.name} has "
                f"{[i.name for i in model.inputs]} -> {[o.name for o in model.outputs]}"
            )
        self._ncnn = ncnn
        self._files = converted(model, ncnn)
        self._net = load_net(ncnn, self._files, threads)
        self._closing = threading.Lock()
        self.inputs, self.outputs = tuple(model.inputs), tuple(model.outputs)
        self._output_name = model.outputs[0].name

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        (batch,) = feeds.values()
        with self._closing:
            net = self._net
        if net is None:
            raise BackendUnavailableError("this ncnn session is closed; create a new Predictor")
        images = [run_image(self._ncnn, net, self._files, np.ascontiguousarray(i, dtype=np.float32)) for i in batch]
        return {self._output_name: np.stack(images)}

    def close(self) -> None:
        with self._closing:
            self._net = None  # calls already running keep their reference until they end


class NcnnBackend(Backend):
    """ncnn's CPU engine. Priority 70, below ort-cpu, openvino and mnn: ``backend="auto"`` takes it where
    its trial on the model says it is the fastest here (deploy-sdk's sdk.tuning), and keeps it out
    where its pictures disagree with the others'."""

    name = "ncnn"
    devices = ("cpu",)
    options = OPTIONS
    priority = 70

    def _probe(self, device) -> Availability:
        try:
            ncnn = import_ncnn()
            _, pnnx_version = pnnx_program()
        except BackendUnavailableError as exc:
            return Availability.no(str(exc))
        return Availability.yes(ncnn=ncnn.__version__, pnnx=pnnx_version, precision="fp32")

    def create_session(self, model, device, options: Mapping[str, Any]) -> Session:
        threads = session_threads(options)  # bad options fail before anything heavy happens
        return NcnnSession(import_ncnn(), model, threads)

    def concurrent_options(self, device, calls: int) -> Mapping[str, Any] | None:
        # One Net serves calls from several threads (an extractor each), so ``calls`` calls share the
        # cores by their thread count.
        from sdk.devices import cpu_cores

        return {"threads": max(1, cpu_cores() // max(1, calls))}

    def raw_runner(self, model, device, options: Mapping[str, Any]) -> RawRunner:
        session = NcnnSession(import_ncnn(), model, session_threads(options))
        return RawRunner(session.run, dict, "bare ncnn net (extractor per image, Mat in, Mat out)", session.close)
