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

# sdk: a Predictor; raw: a backend's own bare engine (Backend.raw_runner); reference: torch eager,
# the accuracy reference; peer: the strongest PyTorch a CPU user would run (channels_last +
# torch.compile); floor: numpy's sgemm on as many FLOPs as the model needs (the fp32 hardware floor).
# autocast: torch eager under CUDA autocast to float16.
KINDS = ("sdk", "raw", "reference", "channels_last", "peer", "autocast", "floor")


@dataclass(frozen=True)
class Job:
    """Everything a worker needs (picklable: it crosses the process boundary)."""

    kind: str
    backend: str  # SDK backend name (for sdk and raw rows), "torch", or "sgemm" for the floor
    model: str
    device: str  # "auto", "cpu", "cuda", "cuda:N"
    images: tuple  # HxWx3 uint8 arrays, one per image of the batch
    scale: int
    output_path: str  # where the worker saves its uint8 output for the accuracy check
    options: tuple = ()  # (name, value) Predictor options of this row, e.g. (("optimize", False),)
    flops: float = 0.0  # the floor row: FLOPs of one call of the model
    pipeline: dict | None = None  # declared pipeline fields (--value-range ...), as Predictor(pipeline=)
    torch_module: str = ""  # torch rows: FILE.py:NAME builder of the module (sdk.bench.torch_module)


def make_runner(job: Job) -> Runner:
    if job.kind == "sdk":
        return SdkRunner(job)
    if job.kind == "raw":
        return RawEngineRunner(job)
    if job.kind in ("reference", "channels_last", "peer", "autocast"):
        return TorchRunner(job)
    if job.kind == "floor":
        return FloorRunner(job)
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

        self.predictor = Predictor(
            self.job.model,
            backend=self.job.backend,
            device=self.job.device,
            pipeline=self.job.pipeline,
            **dict(self.job.options),
        )
        self.device = self.predictor.device
        if self.job.backend == "auto":  # the row shows what auto chose
            self.device = f"{self.predictor.device}: {self.predictor.backend}"
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
    from ..resolution import check_declared, resolve

    model = Model(model_name)
    spec = resolve(model, declared).spec
    model.declared = check_declared(declared)
    return model, Pipeline(spec, model)


class RawEngineRunner(Runner):
    """A backend's bare engine (``Backend.raw_runner``) fed a tensor prepared beforehand.

    It runs the model file the backend's Session gets - the optimised one, for this factor - so the
    row differs from the SDK row by the SDK's own work alone. The SDK's pipeline prepares the feeds
    once, before timing, and turns the output into pixels after it, only for the accuracy check.
    """

    has_stages = False

    def load(self) -> None:
        from ..devices import parse_device
        from ..graph.inputs import shape_inputs
        from ..optimize import optimized_model, split_options
        from ..plugins import load_plugins
        from ..selection import availability

        record = load_plugins().get(self.job.backend)
        if record is None:
            raise BackendUnavailableError(f"backend {self.job.backend!r} is not installed")
        backend = record.backend
        found, device = availability(backend, parse_device(self.job.device))
        if not found.ok:
            raise BackendUnavailableError(found.reason)
        model, self.pipeline = _pipeline_for(self.job.model, self.job.pipeline)
        self.scale = self.pipeline.check_scale(self.job.scale)
        self.prepared = self.pipeline.prepare(self.batch, self.scale)
        optimize, options = split_options(dict(self.job.options))
        baked = shape_inputs(model.proto) if optimize else []
        target = model
        if optimize:
            every = self.pipeline.feeds(self.prepared.tensor, self.scale)
            values = {name: every[name] for name in baked}
            target = optimized_model(model, values or None) or model
            if target is model:
                baked = []  # the pass changed nothing: the original model, factor fed at run time
        runner = backend.raw_runner(target, device, options)
        if runner is None:
            raise BackendUnavailableError(f"backend {backend.name!r} offers no raw baseline (Backend.raw_runner)")
        self.runner, self.source, self.device = runner, runner.description, str(device)
        self.feeds = {k: v for k, v in self.pipeline.feeds(self.prepared.tensor, self.scale).items() if k not in baked}

    def call(self):
        return self.runner.run(self.feeds)

    def staged(self):
        start = time.perf_counter()
        self.call()
        return None, time.perf_counter() - start, None

    def images(self, result) -> np.ndarray:
        out = self.pipeline.output(self.runner.outputs(result), self.prepared.tensor.shape, self.scale)
        return self.pipeline.finish(out, self.prepared)


class FloorRunner(Runner):
    """numpy's float32 matrix product, timed as a row interleaved with the others: its fastest call
    gives the machine's sgemm rate in this run, the model's FLOPs at that rate the fp32 floor."""

    has_stages = False

    def load(self) -> None:
        from .floor import fastest_side

        if self.job.flops <= 0:
            raise BackendUnavailableError("the model's FLOPs could not be counted from its graph")
        # The fastest of a few square sizes is the one timed; the row's fastest call then gives the
        # rate and compare.py scales it to the model's FLOPs, whatever the size (sdk.bench.floor).
        side, probed = fastest_side(self.job.flops)
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((side, side), dtype=np.float32)
        self.b = rng.standard_normal((side, side), dtype=np.float32)
        self.out = np.empty((side, side), dtype=np.float32)
        self.sgemm_flops = 2.0 * side**3
        self.source = (
            f"numpy {np.__version__} float32 matmul {side}x{side} @ {side}x{side} (the fastest of "
            f"{probed} in a probe; the rate of its fastest call in the run)"
        )

    def call(self):
        np.matmul(self.a, self.b, out=self.out)

    def staged(self):
        start = time.perf_counter()
        self.call()
        return None, time.perf_counter() - start, None

    def images(self, result):
        return None


class TorchRunner(Runner):
    """The PyTorch module, in the tutorial's pipeline: float tensor in, float out, then pixels.
    Eager for the reference row; channels_last (eager) for the "channels_last" row; channels_last +
    torch.compile for the "peer" row.

    It uses the SDK's own pre/post so that a difference in the pictures can only come from the
    engine. TF32 stays off on CUDA: the reference must be a true float32 computation.
    """

    def load(self) -> None:
        from ..devices import parse_device

        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(f"torch is not installed ({exc}): pip install torch==2.13.0") from exc
        requested = parse_device(self.job.device)
        if requested is None:
            requested = parse_device("cuda" if torch.cuda.is_available() else "cpu")
        if requested.kind == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailableError(f"torch {torch.__version__} sees no CUDA GPU (a CPU build, or no driver)")
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        else:
            from ..devices import cpu_cores

            torch.set_num_threads(cpu_cores())
        self.torch = torch
        self.torch_device = torch.device("cpu" if requested.kind == "cpu" else f"cuda:{requested.index}")
        self.device = str(requested)
        model, self.pipeline = _pipeline_for(self.job.model, self.job.pipeline)
        if self.job.torch_module:
            from .torch_module import torch_module

            module, self.input_names, self.source = torch_module(self.job.torch_module, self.pipeline.spec.image_input)
        else:
            from ..zoo.reference import reference_module

            module, self.input_names, self.source = reference_module(model)
        self.module = module.to(self.torch_device).eval()
        self.scale = self.pipeline.check_scale(self.job.scale)
        self.memory_format = torch.contiguous_format
        if self.job.kind == "channels_last":
            self.memory_format = torch.channels_last
            self.module = self.module.to(memory_format=torch.channels_last)
            self.source += ", channels_last"
        if self.job.kind == "peer":
            self._compile()
        if self.job.kind == "autocast":
            self.source += ", autocast to float16"

    def _compile(self) -> None:
        """channels_last + torch.compile, compiled here on the benchmark's own input, so that the
        compile time is reported apart (``compile_s``) and never lands in a timed call."""
        torch = self.torch
        self.memory_format = torch.channels_last
        self.module = self.module.to(memory_format=torch.channels_last)
        try:
            self.module = torch.compile(self.module)
            start = time.perf_counter()
            self._infer(self.pipeline.prepare(self.batch, self.scale))
            self.compile_s = time.perf_counter() - start
        except Exception as exc:  # inductor needs a C++ compiler; without one there is no such row
            raise BackendUnavailableError(
                f"torch.compile failed here ({type(exc).__name__}: {exc}); it needs a working C++ compiler (g++)"
            ) from exc
        self.source += ", channels_last + torch.compile (inductor)"

    def _infer(self, prepared) -> np.ndarray:
        torch = self.torch
        feeds = self.pipeline.feeds(prepared.tensor, self.scale)
        # Resize's factor is read as numbers by the module: it stays on the host, as in ORT.
        args = [
            torch.from_numpy(feeds[name]).to(self.torch_device, memory_format=self.memory_format)
            if feeds[name].ndim > 1
            else torch.from_numpy(feeds[name])
            for name in self.input_names
        ]
        with torch.inference_mode(), torch.autocast(self.torch_device.type, torch.float16, self.job.kind == "autocast"):
            out = self.module(*args)
        return self.pipeline.output(out.float().cpu().numpy(), prepared.tensor.shape, self.scale)

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
