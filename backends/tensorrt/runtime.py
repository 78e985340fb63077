"""Running a deserialized engine: the only module that touches pycuda.

One :class:`EngineRunner` per engine holds one execution context, one CUDA stream and its buffers.
Execution contexts are not thread-safe, so a runner serialises its calls with a lock; for parallel
work create one Predictor per thread. Buffers (device memory and pinned host memory, so that copies
are real DMA transfers that overlap nothing else on the stream) are kept between calls and only
grown, so a run of same-sized images allocates once.

Every CUDA call runs with the device's *primary* context pushed: the CUDA runtime inside TensorRT
adopts whatever context is current, so builds, engines and our buffers all live on the device the
user chose, and other libraries in the process (PyTorch, ONNX Runtime) share that context. That
context is retained once per GPU for the process and kept (see :class:`CudaDevice`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from sdk.devices import GPU
from sdk.errors import BackendUnavailableError, InputError, SDKError


class IncompatibleEngine(SDKError):
    """TensorRT refused to deserialize an engine (another TensorRT build or GPU wrote it)."""


def import_pycuda():
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendUnavailableError(
            f"pycuda is not installed ({exc}): pip install 'deploy-sdk[trt]' (pycuda builds from source "
            "and needs the CUDA toolkit: nvcc on PATH, CUDA headers)"
        ) from exc
    except Exception as exc:  # libcuda missing or too old for this pycuda build
        raise BackendUnavailableError(
            f"pycuda does not load ({type(exc).__name__}: {exc}); check the NVIDIA driver"
        ) from exc
    return cuda


class CudaDevice:
    """The primary CUDA context of one GPU, made current around each use.

    One per GPU for the whole process (:func:`cuda_device`): the primary context is retained once
    and never released. Releasing it belongs to the thread that pushed it, and a session may be
    closed from any thread (CUDA then ignores the release, silently); and each retain/release
    cycle that reaches zero would tear the context down under the other libraries sharing it.
    """

    def __init__(self, gpu: GPU):
        cuda = import_pycuda()
        try:
            cuda.init()
            # By PCI bus id: CUDA's ordinal depends on CUDA_DEVICE_ORDER, the bus id does not.
            device = cuda.Device(gpu.pci_bus_id) if gpu.pci_bus_id else cuda.Device(gpu.index)
            self._context = device.retain_primary_context()
        except cuda.Error as exc:
            raise BackendUnavailableError(
                f"CUDA cannot open cuda:{gpu.index} ({gpu.name}, {gpu.pci_bus_id or 'no PCI bus id'}): {exc}; "
                "check the NVIDIA driver"
            ) from exc
        self._cuda = cuda
        self.index = gpu.index

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()


_devices: dict[str, CudaDevice] = {}
_devices_lock = threading.Lock()


def cuda_device(gpu: GPU) -> CudaDevice:
    """The process's one :class:`CudaDevice` for ``gpu``, opened on first use."""
    key = gpu.pci_bus_id or gpu.uuid or f"cuda:{gpu.index}"
    with _devices_lock:
        if key not in _devices:
            _devices[key] = CudaDevice(gpu)
        return _devices[key]


@dataclass(frozen=True)
class IOTensor:
    name: str
    dtype: np.dtype
    is_input: bool


class _Buffer:
    """Pinned host memory and device memory of one tensor, grown when a bigger shape comes."""

    def __init__(self, cuda):
        self._cuda = cuda
        self.capacity = 0
        self.host = None
        self.device = None

    def fit(self, nbytes: int) -> None:
        if nbytes <= self.capacity:
            return
        self.free()
        self.host = self._cuda.pagelocked_empty(nbytes, np.uint8)
        self.device = self._cuda.mem_alloc(nbytes)
        self.capacity = nbytes

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        return self.host[: count * dtype.itemsize].view(dtype).reshape(shape)

    def free(self) -> None:
        if self.device is not None:
            self.device.free()
        self.host = self.device = None
        self.capacity = 0


class EngineRunner:
    """One engine, ready to run numpy feeds on its GPU."""

    def __init__(self, trt, logger, engine_bytes: bytes, device: CudaDevice):
        self._cuda = import_pycuda()
        self._device = device
        self._lock = threading.Lock()
        with device.active():
            self._runtime = trt.Runtime(logger)
            self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self._engine is None:
                raise IncompatibleEngine(
                    "TensorRT could not deserialize the engine (built by another TensorRT or for another GPU)"
                )
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise SDKError("TensorRT could not create an execution context; the GPU may be out of memory")
            self._stream = self._cuda.Stream()
        self.tensors = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self.tensors.append(IOTensor(name, np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))), is_input))
        self._buffers = {t.name: _Buffer(self._cuda) for t in self.tensors}

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.tensors if t.is_input]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy feeds in, execute, copy outputs out; returns arrays the caller owns."""
        with self._lock, self._device.active():
            cuda, context, stream = self._cuda, self._context, self._stream
            for tensor in self.tensors:
                if not tensor.is_input:
                    continue
                array = np.ascontiguousarray(feeds[tensor.name], dtype=tensor.dtype)
                if not context.set_input_shape(tensor.name, array.shape):
                    raise InputError(
                        f"TensorRT rejected shape {list(array.shape)} for input {tensor.name!r}: "
                        "it is outside the engine's optimisation profile"
                    )
                buffer = self._buffers[tensor.name]
                buffer.fit(max(1, array.nbytes))
                staged = buffer.view(array.shape, tensor.dtype)
                np.copyto(staged, array)
                cuda.memcpy_htod_async(buffer.device, staged, stream)
                context.set_tensor_address(tensor.name, int(buffer.device))
            results = {}
            for tensor in self.tensors:
                if tensor.is_input:
                    continue
                shape = tuple(context.get_tensor_shape(tensor.name))
                if any(d < 0 for d in shape):
                    raise SDKError(f"TensorRT could not work out the shape of output {tensor.name!r} ({list(shape)})")
                buffer = self._buffers[tensor.name]
                buffer.fit(max(1, int(np.prod(shape, dtype=np.int64)) * tensor.dtype.itemsize))
                context.set_tensor_address(tensor.name, int(buffer.device))
                results[tensor.name] = (buffer, shape, tensor.dtype)
            if not context.execute_async_v3(stream.handle):
                raise SDKError("TensorRT failed to run the engine; its log above says why")
            staged_outputs = {}
            for name, (buffer, shape, dtype) in results.items():
                staged = buffer.view(shape, dtype)
                cuda.memcpy_dtoh_async(staged, buffer.device, stream)
                staged_outputs[name] = staged
            stream.synchronize()
            # Copies: the pinned buffers are overwritten by the next call.
            return {name: staged.copy() for name, staged in staged_outputs.items()}

    def close(self) -> None:
        with self._lock:
            if self._engine is None:
                return
            with self._device.active():
                for buffer in self._buffers.values():
                    buffer.free()
                # Context before engine before runtime: each holds the next one's memory.
                self._context = None
                self._engine = None
                self._runtime = None
                self._stream = None
