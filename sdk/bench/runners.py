"""What one benchmark row runs, inside its worker process: the SDK, a bare engine, or torch.

Every runner answers the same three questions: ``call()`` - one end-to-end call, as its user
would make it (the worker times it); ``staged()`` - the same call timed as pre / infer / post;
``images(result)`` - the call's result as N x H x W x 3 uint8, for the accuracy check (untimed).
"infer" is always numpy feeds in -> numpy outputs out, host<->device copies included, so the
split means the same thing for every row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import BackendUnavailableError, SDKError

KINDS = ("sdk", "raw", "reference")
# Engines that have a bare baseline: the SDK backend it shadows -> ONNX Runtime provider.
RAW_ENGINES = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class Job:
    """Everything a worker needs (picklable: it crosses the process boundary)."""

    kind: str
    backend: str  # SDK backend name, engine name for "raw", "torch" for the reference
    model: str
    device: str  # "auto", "cpu", "cuda", "cuda:N"
    images: tuple  # HxWx3 uint8 arrays, one per image of the batch
    scale: int
    output_path: str  # where the worker saves its uint8 output for the accuracy check
    pipeline: dict | None = None  # declared pipeline fields (--value-range ...), as Predictor(pipeline=)


def make_runner(job: Job) -> "Runner":
    if job.kind == "sdk":
        return SdkRunner(job)
    if job.kind == "raw":
        return RawOrtRunner(job)
    if job.kind == "reference":
        return TorchRunner(job)
    raise SDKError(f"unknown row kind {job.kind!r}; expected one of {KINDS}")


class Runner:
    has_stages = True
    device = "cpu"

    def __init__(self, job: Job):
        self.job = job
        self.batch = np.stack(job.images)

    def load(self) -> None:
        raise NotImplementedError

    def call(self):
        raise NotImplementedError

    def staged(self) -> tuple[float | None, float, float | None]:
        raise NotImplementedError

    def images(self, result) -> np.ndarray:
        return np.asarray(result)


class SdkRunner(Runner):
    """``sdk.Predictor`` through its public API: the numbers a user gets."""

    def load(self) -> None:
        from ..predictor import Predictor

        self.predictor = Predictor(self.job.model, backend=self.job.backend, device=self.job.device,
                                   pipeline=self.job.pipeline)
        self.device = self.predictor.device
        self.scale = self.predictor.pipeline.check_scale(self.job.scale)

    def call(self):
        if len(self.job.images) == 1:
            return self.predictor(self.job.images[0], scale=self.scale)[None]
        return self.predictor.predict_batch(self.job.images, scale=self.scale, batch_size=len(self.job.images))

    def staged(self):
        # The public pieces __call__ is made of, so the split needs no hooks into the core.
        pipeline = self.predictor.pipeline
        start = time.perf_counter()
        prepared = pipeline.prepare(self.batch, self.scale)
        prepared_at = time.perf_counter()
        out = pipeline.run_tensor(self.predictor.session, prepared.tensor, self.scale)
        ran_at = time.perf_counter()
        pipeline.finish(out, prepared)
        done = time.perf_counter()
        return prepared_at - start, ran_at - prepared_at, done - ran_at

    def images(self, result) -> np.ndarray:
        return np.stack(list(result))


def _pipeline_for(model_name: str, declared: dict | None = None):
    from ..model import Model
    from ..pipeline import Pipeline
    from ..spec import resolve

    model = Model(model_name)
    return model, Pipeline(resolve(model, declared).spec, model)


def ort_session_options(ort, device_kind: str):
    """The SessionOptions ``ort-cpu`` / ``ort-cuda`` use, set by hand, so the comparison is fair."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if device_kind == "cpu":
        options.intra_op_num_threads = cpu_threads()
    return options


def cpu_threads() -> int:
    """Intra-op threads for CPU rows: the rule ort-cpu uses (physical cores this process may use)."""
    try:
        from backends.onnxruntime import physical_cores
    except ImportError:  # the built-in plugin is not importable: apply the same rule here
        import os

        import psutil

        allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(psutil.cpu_count(logical=False) or allowed, allowed))
    return physical_cores()


class RawOrtRunner(Runner):
    """A bare ``onnxruntime.InferenceSession`` fed a tensor prepared beforehand: the engine alone.

    The SDK's pipeline prepares that tensor once, before timing, and turns the output into pixels
    after it, only for the accuracy check; no SDK code runs in the timed calls.
    """

    has_stages = False

    def load(self) -> None:
        from ..devices import describe_missing_gpu, gpu, parse_device

        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(f"onnxruntime is not installed ({exc}): pip install onnxruntime") from exc
        provider = RAW_ENGINES.get(self.job.backend)
        if provider is None:
            raise SDKError(f"no raw baseline for {self.job.backend!r}; there is one for {sorted(RAW_ENGINES)}")
        kind = "cpu" if provider == "CPUExecutionProvider" else "cuda"
        requested = parse_device(self.job.device)
        device = requested if requested is not None else parse_device(kind)
        if device.kind != kind:
            raise BackendUnavailableError(f"the raw {self.job.backend} baseline runs on {kind}, not {device}")
        if provider not in ort.get_available_providers():
            raise BackendUnavailableError(f"onnxruntime {ort.__version__} has no {provider} (the CPU build?); "
                                          "install onnxruntime-gpu for CUDA")
        if kind == "cuda" and gpu(device) is None:
            raise BackendUnavailableError(describe_missing_gpu(device))
        providers = [provider] if kind == "cpu" else [
            (provider, {"device_id": device.index, "cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
        model, self.pipeline = _pipeline_for(self.job.model, self.job.pipeline)
        self.session = ort.InferenceSession(str(model.path), sess_options=ort_session_options(ort, kind),
                                            providers=providers)
        if self.session.get_providers()[0] != provider:
            raise BackendUnavailableError(f"onnxruntime fell back to {self.session.get_providers()} instead of {provider}")
        self.device = str(device)
        self.scale = self.pipeline.check_scale(self.job.scale)
        self.prepared = self.pipeline.prepare(self.batch, self.scale)
        self.feeds = self.pipeline.feeds(self.prepared.tensor, self.scale)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def call(self):
        return self.session.run(self.output_names, self.feeds)

    def staged(self):
        start = time.perf_counter()
        self.call()
        return None, time.perf_counter() - start, None

    def images(self, result) -> np.ndarray:
        out = self.pipeline.output(dict(zip(self.output_names, result)), self.prepared.tensor.shape, self.scale)
        return self.pipeline.finish(out, self.prepared)


class TorchRunner(Runner):
    """The PyTorch eager module, in the tutorial's pipeline: float tensor in, float out, then pixels.

    It uses the SDK's own pre/post so that a difference in the pictures can only come from the
    engine. TF32 stays off on CUDA: the reference must be a true float32 computation.
    """

    def load(self) -> None:
        from ..devices import parse_device

        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(f"torch is not installed ({exc}): pip install torch==2.13.0") from exc
        from .reference import reference_module

        requested = parse_device(self.job.device)
        if requested is None:
            requested = parse_device("cuda" if torch.cuda.is_available() else "cpu")
        if requested.kind == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailableError(f"torch {torch.__version__} sees no CUDA GPU (a CPU build, or no driver)")
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        else:
            torch.set_num_threads(cpu_threads())
        self.torch = torch
        self.torch_device = torch.device("cpu" if requested.kind == "cpu" else f"cuda:{requested.index}")
        self.device = str(requested)
        model, self.pipeline = _pipeline_for(self.job.model, self.job.pipeline)
        module, self.input_names, self.source = reference_module(model)
        self.module = module.to(self.torch_device).eval()
        self.scale = self.pipeline.check_scale(self.job.scale)

    def _infer(self, prepared) -> np.ndarray:
        torch = self.torch
        feeds = self.pipeline.feeds(prepared.tensor, self.scale)
        # Resize's factor is read as numbers by the module: it stays on the host, as in ORT.
        args = [torch.from_numpy(feeds[name]).to(self.torch_device) if feeds[name].ndim > 1 else torch.from_numpy(feeds[name])
                for name in self.input_names]
        with torch.inference_mode():
            out = self.module(*args)
        return self.pipeline.output(out.cpu().numpy(), prepared.tensor.shape, self.scale)

    def call(self):
        prepared = self.pipeline.prepare(self.batch, self.scale)
        return self.pipeline.finish(self._infer(prepared), prepared)

    def staged(self):
        start = time.perf_counter()
        prepared = self.pipeline.prepare(self.batch, self.scale)
        prepared_at = time.perf_counter()
        out = self._infer(prepared)
        ran_at = time.perf_counter()
        self.pipeline.finish(out, prepared)
        return prepared_at - start, ran_at - prepared_at, time.perf_counter() - ran_at
