"""ONNX Runtime backends: ``ort-cpu`` and ``ort-cuda``.

Nothing here imports onnxruntime until a backend is probed or a session is created.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdk import hookimpl
from sdk.backend import Availability, Backend, RawRunner, Session, TensorInfo
from sdk.devices import Device, cpu_cores, describe_missing_gpu, gpu
from sdk.errors import BackendUnavailableError, InputError, ModelError, SDKError
from sdk.stdio import stdout_to_stderr

if TYPE_CHECKING:
    from sdk.cancel import CancelToken

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
# Keys of **options that are not SessionOptions attributes.
_OWN_OPTIONS = {"provider_options", "session_config", "cudnn_conv_algo_search", "precision"}
PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32",)}
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"onnxruntime is not installed ({exc}): pip install 'deploy-sdk[cpu]' (or [gpu] for CUDA)"
        ) from exc
    return onnxruntime


def session_options(ort, options: Mapping[str, Any], device: Device):
    """The SessionOptions every ORT session of ours uses (the Session and the raw baseline alike)."""
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session_options.log_severity_level = 3  # ORT's placement warnings are noise for our users
    if device.kind == "cpu":
        session_options.intra_op_num_threads = cpu_cores()
        # ORT's memory pattern allocates, from the second run of a shape on, one block for all of its
        # activations, beside the arena chunks the first run left: every window shape then cost up to
        # twice what its activations need (srcnn3 x2, 4 windows of 128x128: 3.9 KB per input pixel
        # instead of 2.2), more than the memory budget planned. Without it the second run reuses the
        # first run's chunks; no slower on the build machine (srcnn3 x2 256x256, espcn x3 64x64,
        # srcnn x3 128x128, interleaved medians within noise).
        session_options.enable_mem_pattern = False
    for key, value in (options.get("session_config") or {}).items():
        session_options.add_session_config_entry(str(key), str(value))
    for key, value in options.items():
        if key in _OWN_OPTIONS:
            continue
        if not hasattr(session_options, key):
            raise InputError(
                f"unknown onnxruntime option {key!r}; pass onnxruntime.SessionOptions attributes "
                f"(e.g. intra_op_num_threads) or one of {sorted(_OWN_OPTIONS)}"
            )
        setattr(session_options, key, value)
    return session_options


def inference_session(ort, model, providers: list, options: Mapping[str, Any], device: Device):
    try:
        return ort.InferenceSession(
            str(model.path), sess_options=session_options(ort, options, device), providers=providers
        )
    except InputError:
        raise
    except Exception as exc:
        hint = ""
        if "NOT_IMPLEMENTED" in str(exc):  # e.g. a bfloat16 graph: ORT's CPU kernels are float32/float16
            hint = (
                f"; onnxruntime has no kernel for one of its operators with these types on {device}: convert the "
                "model to float32 (or float16), or try another backend (see `sdk backends`)"
            )
        raise ModelError(f"onnxruntime cannot load {model.path}: {exc}{hint}") from exc


class OrtSession(Session):
    """An InferenceSession; on CUDA, run through an IO binding whose device buffers outlive the call.

    A tiled image is many windows of one shape. On CUDA each window's input is copied into the same
    device buffer, the engine writes into the same output buffer, and only the output comes back to
    the host: no allocation per window, and the engine never waits for ORT to allocate its output.
    Buffers are kept for the last input shape only (a whole large image's would otherwise stay
    resident after its call), and ``close()`` lets them go with the session's own memory.
    """

    def __init__(self, ort, model, providers: list, options: Mapping[str, Any], device: Device):
        self._session = inference_session(ort, model, providers, options, device)
        self.model_path = model.path  # the file really loaded (optimised, quantised): for inspection
        self.device = device
        self.inputs = tuple(_info(i) for i in self._session.get_inputs())
        self.outputs = tuple(_info(o) for o in self._session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        self._ort = ort
        self._bound = device.kind == "cuda"  # looked up once: run() is on every call's path
        self._ort_device = "cuda"  # where bound buffers live (tests bind on "cpu" to run this path here)
        self._binding = None
        self._buffers: tuple = ()  # (shape key, {input: OrtValue}, [output OrtValue]) of the last shape
        self._buffers_lock = threading.Lock()

    @property
    def providers(self) -> list[str]:
        return self._session.get_providers()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(feeds, None)

    def run_cancellable(self, feeds: Mapping[str, np.ndarray], cancel: CancelToken) -> dict[str, np.ndarray]:
        """Run once, stopped part-way when ``cancel`` is called off: ONNX Runtime reads its
        ``RunOptions.terminate`` between the graph's nodes, so a long run ends within one node's time
        (not the whole run's) and its threads go idle."""
        options = self._ort.RunOptions()
        with cancel.watch(lambda: setattr(options, "terminate", True)):
            cancel.check()
            try:
                outputs = self._run(feeds, options)
            except SDKError:
                cancel.check()  # ORT's "terminate flag" failure is the cancellation, not an engine fault
                raise
        cancel.check()
        return outputs

    def _run(self, feeds: Mapping[str, np.ndarray], options) -> dict[str, np.ndarray]:
        try:
            if self._bound:
                return self._run_bound(feeds, options)
            names = self._output_names
            return dict(zip(names, self._session.run(names, feeds if type(feeds) is dict else dict(feeds), options)))
        except self._ort.capi.onnxruntime_pybind11_state.InvalidArgument as exc:
            raise InputError(f"onnxruntime rejected the inputs: {exc}") from exc
        except self._ort.capi.onnxruntime_pybind11_state.Fail as exc:
            raise SDKError(f"onnxruntime failed while running: {exc}") from exc

    def _run_bound(self, feeds: Mapping[str, np.ndarray], options) -> dict[str, np.ndarray]:
        # One caller at a time uses the kept buffers; a caller that finds them busy (a second thread on
        # this session) binds buffers of its own for its call, so calls never wait for each other.
        if not self._buffers_lock.acquire(blocking=False):
            return self._run_bound_once(feeds, options)
        try:
            return self._run_kept(feeds, options)
        finally:
            self._buffers_lock.release()

    def _run_bound_once(self, feeds: Mapping[str, np.ndarray], options) -> dict[str, np.ndarray]:
        binding = self._session.io_binding()
        for name, array in feeds.items():
            if array.ndim <= 1:
                binding.bind_cpu_input(name, array)
            else:
                value = self._ort.OrtValue.ortvalue_from_numpy(array, self._ort_device, self.device.index)
                binding.bind_ortvalue_input(name, value)
        for name in self._output_names:
            binding.bind_output(name, self._ort_device, self.device.index)
        self._session.run_with_iobinding(binding, options)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def _run_kept(self, feeds: Mapping[str, np.ndarray], options) -> dict[str, np.ndarray]:
        binding = self._binding
        if binding is None:
            binding = self._binding = self._session.io_binding()
        # Shape-like inputs (Resize's scales) are read on the host by the CUDA provider: copying them
        # to the device would only make ORT copy them back. They are bound afresh on every call.
        tensors = {name: np.ascontiguousarray(a) for name, a in feeds.items() if a.ndim > 1}
        # The host inputs' values are part of the key: a new factor at the same size is a new output shape.
        key = tuple((name, a.shape, a.dtype.str) for name, a in tensors.items()) + tuple(
            (name, a.dtype.str, tuple(a.ravel().tolist())) for name, a in feeds.items() if a.ndim <= 1
        )
        if self._buffers and self._buffers[0] == key:
            _, on_device, outputs = self._buffers
            for name, array in tensors.items():
                on_device[name].update_inplace(array)  # host -> the same device buffer
        else:
            self._buffers = ()  # the old shape's buffers go before the new ones are allocated
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            on_device = {}
            for name, array in tensors.items():
                # A buffer of its own (on the host, ortvalue_from_numpy would wrap the caller's array,
                # and the next window's update would write into it), filled like every later window.
                value = self._ort.OrtValue.ortvalue_from_shape_and_type(
                    array.shape, array.dtype, self._ort_device, self.device.index
                )
                value.update_inplace(array)
                on_device[name] = value
                binding.bind_ortvalue_input(name, value)
            for name in self._output_names:
                binding.bind_output(name, self._ort_device, self.device.index)
            outputs = None
        for name, array in feeds.items():
            if array.ndim <= 1:
                binding.bind_cpu_input(name, array)
        self._session.run_with_iobinding(binding, options)
        if outputs is None:
            # ORT allocated the outputs on the device for this shape; bind them from now on.
            outputs = binding.get_outputs()
            binding.clear_binding_outputs()
            for name, value in zip(self._output_names, outputs):
                binding.bind_ortvalue_output(name, value)
            self._buffers = (key, on_device, list(outputs))
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def release_memory(self) -> None:
        """Shrink the CPU arena: a tiny run asks ONNX Runtime to free, at its end, every arena region
        not in use. A large run's convolution buffers (about 1.7 GB for a 272x272 window of srcnn3 at
        x2) otherwise stay with the process for good; without the arena each run would pay for fresh
        pages instead (46% slower on that window, measured on the build machine). Sessions with shape
        inputs (a runtime factor) are left alone: zeros are no valid factor. On CUDA the kept device
        buffers of the last window shape go too, and the GPU's arena is shrunk the same way."""
        if self._bound:
            with self._buffers_lock:
                self._buffers = ()
        if self._session is None or any(len(i.shape) <= 1 for i in self.inputs):
            return
        # 16 a side: small, and a multiple of what size-constrained models ask (8, 16).
        feeds = {i.name: np.zeros([d if isinstance(d, int) else 16 for d in i.shape], i.dtype) for i in self.inputs}
        options = self._ort.RunOptions()
        arena = f"gpu:{self.device.index}" if self._bound else "cpu:0"
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", arena)
        options.log_severity_level = 4  # a model that refuses the tiny input is no error worth a line
        try:
            self._session.run(None, feeds, options)
        except Exception:  # the arena stays as it is; the next large request may try again
            pass

    def close(self) -> None:
        # The device buffers and the binding hold GPU memory of their own: drop them with the session.
        with self._buffers_lock:
            self._buffers = ()
            self._binding = None
        self._session = None


def _info(arg) -> TensorInfo:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        if arg.type == "tensor(bfloat16)":
            hint = (
                "onnxruntime's Python API can neither feed nor return bfloat16 tensors: convert the model's "
                "inputs and outputs to float32 or float16, or use a backend that takes bfloat16 (see `sdk backends`)"
            )
        else:
            hint = "export the model with float32 or float16 inputs and outputs"
        raise ModelError(
            f"input/output {arg.name!r} has type {arg.type}, which onnxruntime cannot exchange with the SDK; {hint}"
        )
    return TensorInfo(arg.name, tuple(d if isinstance(d, int) else (d or None) for d in arg.shape), np.dtype(dtype))


# ONNX Runtime's intra-op threads spin-wait for a while after each run, to answer the next run sooner.
# In a server the engine's runs alternate with Python work on the other threads (decoding, pre- and
# post-processing, encoding, HTTP), and on a small CPU that spinning takes their core: measured on
# the 2-core build machine, espcn 64x64 p50 7.75 -> 7.18 ms at one client and 153 -> 158 images/s
# at 16 (benchmarks/results/serve.md has the run with it).
SERVER_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


class _OrtBackend(Backend):
    options = None  # any SessionOptions attribute: an open set, so accepts() asks onnxruntime

    def accepts(self, option: str) -> bool:
        if option in _OWN_OPTIONS:
            return True
        try:
            return hasattr(_import_ort().SessionOptions, option)
        except BackendUnavailableError:
            return False

    def _probe(self, device: Device) -> Availability:
        try:
            ort = _import_ort()
        except BackendUnavailableError as exc:
            return Availability.no(str(exc))
        return self._probe_ort(ort, device)

    def _probe_ort(self, ort, device: Device) -> Availability:
        raise NotImplementedError


class OrtCpuBackend(_OrtBackend):
    name = "ort-cpu"
    devices = ("cpu",)
    priority = 100

    def _probe_ort(self, ort, device: Device) -> Availability:
        if CPU not in ort.get_available_providers():
            return Availability.no(f"onnxruntime {ort.__version__} has no CPU provider")
        return Availability.yes(onnxruntime=ort.__version__, threads=cpu_cores())

    def create_session(self, model, device: Device, options: Mapping[str, Any]) -> Session:
        ort = _import_ort()
        return OrtSession(ort, _at_precision(ort, model, options, device), [CPU], options, device)

    def server_options(self, device: Device) -> Mapping[str, Any]:
        return {"session_config": dict(SERVER_SESSION_CONFIG)}

    def concurrent_options(self, device: Device, calls: int) -> Mapping[str, Any]:
        # One session runs concurrent calls (InferenceSession.run is thread-safe); each call's ops use
        # the session's intra-op threads, so ``calls`` calls share the cores by their thread count.
        return {"intra_op_num_threads": max(1, cpu_cores() // max(1, calls))}

    def raw_runner(self, model, device: Device, options: Mapping[str, Any]) -> RawRunner:
        ort = _import_ort()
        return _raw(
            inference_session(ort, _at_precision(ort, model, options, device), [CPU], options, device),
            "bare onnxruntime InferenceSession.run with the ort-cpu session options",
        )


class OrtCudaBackend(_OrtBackend):
    name = "ort-cuda"
    devices = ("cuda",)
    priority = 200

    def _probe_ort(self, ort, device: Device) -> Availability:
        # get_available_providers() lists what the wheel was built with, not what works here.
        if CUDA not in ort.get_available_providers():
            return Availability.no(
                f"onnxruntime {ort.__version__} is the CPU build: pip install 'deploy-sdk[gpu]' "
                "(onnxruntime-gpu, instead of onnxruntime) for CUDA"
            )
        found = gpu(device)
        if found is None:
            return Availability.no(describe_missing_gpu(device))
        missing = _cuda_provider_problem(ort)
        if missing:
            return Availability.no(missing)
        return Availability.yes(
            onnxruntime=ort.__version__, gpu=found.name, compute_capability="%d.%d" % found.compute_capability
        )

    def create_session(self, model, device: Device, options: Mapping[str, Any]) -> Session:
        return self._session(model, device, options)

    def raw_runner(self, model, device: Device, options: Mapping[str, Any]) -> RawRunner:
        # The same session (provider options, fallback check); timed through its IO binding, which
        # is what ort-cuda runs too, minus the SDK around it.
        session = self._session(model, device, options)
        return RawRunner(
            session._run_bound, dict, "bare onnxruntime CUDA session with IO binding, ort-cuda settings", session.close
        )

    def _session(self, model, device: Device, options: Mapping[str, Any]) -> OrtSession:
        ort = _import_ort()
        _at_precision(ort, model, options, device)
        provider_options = {
            "device_id": device.index,
            # EXHAUSTIVE pays a benchmark per new input shape; images come in many shapes.
            "cudnn_conv_algo_search": options.get("cudnn_conv_algo_search", "HEURISTIC"),
            # The arena grows by what a run asks for, not to the next power of two (ORT's default), so
            # that the memory budget tiling plans for is what the GPU really gives this session.
            "arena_extend_strategy": "kSameAsRequested",
            **(options.get("provider_options") or {}),
        }
        # When the CUDA provider cannot start, ORT prints a banner to stdout and retries on the CPU.
        with stdout_to_stderr():
            session = OrtSession(ort, model, [(CUDA, provider_options), CPU], options, device)
        # ORT falls back to the CPU without raising when the CUDA provider cannot start.
        if session.providers[:1] != [CUDA]:
            raise BackendUnavailableError(
                f"onnxruntime could not start its CUDA provider on {device} (it fell back to "
                f"{session.providers}); check the CUDA and cuDNN libraries onnxruntime-gpu {ort.__version__} needs"
            )
        return session


def _at_precision(ort, model, options: Mapping[str, Any], device: Device):
    """The model to load for ``precision`` (default fp32: the model itself)."""
    precision = options.get("precision", "fp32")
    allowed = PRECISIONS[device.kind]
    if precision not in allowed:
        # Unavailable rather than a bad input: under backend="auto" another engine may run it.
        raise BackendUnavailableError(
            f"onnxruntime on {device.kind} runs precision {' or '.join(map(repr, allowed))}, "
            f"not {precision!r} (openvino takes 'bf16'; trt takes 'fp16')"
        )
    if precision == "int8":
        from .ort_int8 import int8_model

        return int8_model(model, ort)
    return model


def _raw(session, description: str) -> RawRunner:
    names = [o.name for o in session.get_outputs()]
    return RawRunner(lambda feeds: session.run(names, feeds), lambda result: dict(zip(names, result)), description)


def _cuda_provider_problem(ort) -> str:
    """Load ORT's CUDA provider library the way ORT will: a missing libcudnn or libcublas shows here
    as a precise message instead of as a silent CPU fallback later."""
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls(directory="")  # CUDA/cuDNN from the nvidia-* wheels, when installed
        except Exception:
            pass
    library = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if not library.exists():
        return ""  # not a Linux wheel layout we know; session creation will check instead
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return f"onnxruntime's CUDA provider cannot load: {exc}; install the CUDA and cuDNN libraries it needs"
    return ""


@hookimpl
def sdk_backends():
    return [OrtCpuBackend(), OrtCudaBackend()]
