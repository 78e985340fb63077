"""Stand-ins for the TensorRT and pycuda objects backends/tensorrt calls, so that build.py and
runtime.py (and the session above them) run on a machine with neither.

They work at the level of the libraries' own objects - Builder, network, parser, config, timing
cache, Runtime, engine, execution context; pycuda's device, primary context, stream, device and
pinned memory - and keep the rules our code must follow: a profile bounds the shapes a context
takes, device memory is only reachable through its address, a context must be current for every
CUDA call, a freed allocation is gone. The "engine" is the parsed ONNX file with its profile; the
execution context runs it with ONNX Runtime's CPU provider, reading and writing fake device memory.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import threading
import types
from enum import IntEnum
from typing import ClassVar

import numpy as np
import onnx

ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"


# -- tensorrt -------------------------------------------------------------------------------------


class DataType(IntEnum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    INT64 = 9


_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT32: np.int32, DataType.INT64: np.int64}
_ONNX_TYPES = {
    onnx.TensorProto.FLOAT: DataType.FLOAT,
    onnx.TensorProto.FLOAT16: DataType.HALF,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.INT64: DataType.INT64,
}


class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class Severity(IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = Severity

    def __init__(self):
        pass


class IProgressMonitor:
    def __init__(self):
        pass


class FakeTensorRT(types.ModuleType):
    """``import tensorrt`` answers this. ``fp16_flag=False`` is TensorRT 11 (no FP16 builder flag)."""

    def __init__(self, version: str = "10.7.0", fp16_flag: bool = True, take_timing_cache: bool = True):
        super().__init__("tensorrt")
        self.__version__ = version
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        flags = {"TF32": "TF32", **({"FP16": "FP16"} if fp16_flag else {})}
        self.BuilderFlag = types.SimpleNamespace(**flags)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
        self.TensorIOMode = TensorIOMode
        self.ILogger = ILogger
        self.IProgressMonitor = IProgressMonitor
        self.take_timing_cache = take_timing_cache
        self.builds: list[FakeConfig] = []
        self.fail_parse = ""
        self.Builder = lambda logger: FakeBuilder(self)
        self.OnnxParser = FakeParser
        self.Runtime = FakeRuntime

    @staticmethod
    def nptype(dtype: DataType):
        return _NUMPY[dtype]


class FakeBuilder:
    def __init__(self, trt: FakeTensorRT):
        self.trt = trt

    def create_network(self, flags: int):
        return FakeNetwork(flags)

    def create_builder_config(self):
        return FakeConfig(self.trt)

    def create_optimization_profile(self):
        return FakeProfile()

    def build_serialized_network(self, network, config):
        if not config.profiles:
            return None
        self.trt.builds.append(config)
        if config.monitor is not None:
            config.monitor.phase_start("Building engine", None, 2)
            config.monitor.step_complete("Building engine", 0)
            config.monitor.step_complete("Building engine", 1)
            config.monitor.phase_finish("Building engine")
        if config.timing is not None:
            config.timing.entries.append(f"timed {network.model.graph.name}")
        header = {"profile": config.profiles[0].shapes, "flags": sorted(config.flags), "strong": network.flags}
        return memoryview(ENGINE_MAGIC + json.dumps(header).encode() + b"\n" + network.model.SerializeToString())


class FakeNetwork:
    def __init__(self, flags: int):
        self.flags = flags
        self.model: onnx.ModelProto | None = None

    @property
    def num_inputs(self) -> int:
        return len(self._inputs())

    def get_input(self, index: int):
        return types.SimpleNamespace(name=self._inputs()[index])

    def _inputs(self) -> list[str]:
        initialisers = {t.name for t in self.model.graph.initializer}
        return [i.name for i in self.model.graph.input if i.name not in initialisers]


class FakeParserError:
    def __init__(self, text: str):
        self.text = text

    def desc(self):
        return self.text

    def node(self):
        return 0


class FakeParser:
    def __init__(self, network: FakeNetwork, logger):
        self.network = network
        self.errors: list[FakeParserError] = []

    def parse_from_file(self, path: str) -> bool:
        model = onnx.load(path)
        for value in model.graph.input:  # TensorRT wants every shape input turned into a constant
            if (
                value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
                and len(value.type.tensor_type.shape.dim) == 1
            ):
                self.errors.append(FakeParserError(f"input {value.name!r}: a float shape tensor cannot be built"))
        self.network.model = model
        return not self.errors

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int):
        return self.errors[index]


class FakeProfile:
    def __init__(self):
        self.shapes: dict[str, list] = {}

    def set_shape(self, name, minimum, optimum, maximum):
        self.shapes[name] = [list(minimum), list(optimum), list(maximum)]


class FakeTimingCache:
    def __init__(self, data: bytes):
        if data and not data.startswith(b"cache:"):
            raise RuntimeError("timing cache written by another TensorRT")
        self.entries = [e for e in data[len(b"cache:") :].decode().split("|") if e] if data else []

    def serialize(self):
        return memoryview(b"cache:" + "|".join(self.entries).encode())


class FakeConfig:
    def __init__(self, trt: FakeTensorRT):
        self.trt = trt
        self.profiles: list[FakeProfile] = []
        self.flags = {"TF32"}  # on by default, as in TensorRT
        self.pools: dict = {}
        self.builder_optimization_level = 3
        self.timing: FakeTimingCache | None = None
        self.monitor = None

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def create_timing_cache(self, data: bytes):
        return FakeTimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        if not self.trt.take_timing_cache:
            self.timing = FakeTimingCache(b"")  # the build gets a cache of its own, empty
            return False
        self.timing = cache
        return True

    def get_timing_cache(self):
        return self.timing

    @property
    def progress_monitor(self):
        return self.monitor

    @progress_monitor.setter
    def progress_monitor(self, monitor):
        self.monitor = monitor


class FakeRuntime:
    def __init__(self, logger):
        Driver.current()  # TensorRT's CUDA runtime needs a current context

    def deserialize_cuda_engine(self, data: bytes):
        data = bytes(data)
        if not data.startswith(ENGINE_MAGIC):
            return None
        header, _, model = data[len(ENGINE_MAGIC) :].partition(b"\n")
        return FakeEngine(json.loads(header), onnx.load_from_string(model))


class FakeEngine:
    def __init__(self, header: dict, model: onnx.ModelProto):
        import onnxruntime

        self.profile = header["profile"]
        self.model = model
        self.session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        initialisers = {t.name for t in model.graph.initializer}
        self.io = [(i.name, TensorIOMode.INPUT, i) for i in model.graph.input if i.name not in initialisers]
        self.io += [(o.name, TensorIOMode.OUTPUT, o) for o in model.graph.output]
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, index: int) -> str:
        return self.io[index][0]

    def get_tensor_mode(self, name: str):
        return next(mode for n, mode, _ in self.io if n == name)

    def get_tensor_dtype(self, name: str):
        value = next(v for n, _, v in self.io if n == name)
        return _ONNX_TYPES[value.type.tensor_type.elem_type]

    def create_execution_context(self):
        Driver.current()
        context = FakeContext(self)
        self.contexts.append(context)
        return context


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.runs = 0

    def set_input_shape(self, name: str, shape) -> bool:
        low, _, high = self.engine.profile[name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(low) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
            return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = int(address)

    def _inputs(self) -> dict[str, np.ndarray]:
        feeds = {}
        for name, mode, _ in self.engine.io:
            if mode == TensorIOMode.INPUT:
                dtype = np.dtype(_NUMPY[self.engine.get_tensor_dtype(name)])
                count = int(np.prod(self.shapes[name]))
                raw = Driver.memory[self.addresses[name]][: count * dtype.itemsize]
                feeds[name] = raw.view(dtype).reshape(self.shapes[name]).copy()
        return feeds

    def get_tensor_shape(self, name: str):
        # TensorRT works output shapes out from the input shapes; running the graph does the same here.
        Driver.current()
        return self.engine.session.run([name], self._inputs())[0].shape

    def execute_async_v3(self, stream_handle: int) -> bool:
        Driver.current()
        names = [n for n, mode, _ in self.engine.io if mode == TensorIOMode.OUTPUT]
        for name, value in zip(names, self.engine.session.run(names, self._inputs())):
            target = Driver.memory[self.addresses[name]]
            flat = np.ascontiguousarray(value).view(np.uint8).ravel()
            target[: flat.size] = flat
        self.runs += 1
        return True


# -- pycuda ---------------------------------------------------------------------------------------


class CudaError(Exception):
    pass


class FakeContextObject:
    def __init__(self, device: FakeDevice):
        self.device = device

    def push(self):
        Driver.stack().append(self)

    @staticmethod
    def pop():
        stack = Driver.stack()
        if not stack:
            raise CudaError("cuCtxPopCurrent failed: no current context")
        stack.pop()

    def detach(self):
        Driver.detached.append(self.device.bus_id)


class FakeDevice:
    def __init__(self, which):
        if not Driver.initialised:
            raise CudaError("cuInit has not been called")
        if isinstance(which, str):
            if which not in Driver.bus_ids:
                raise CudaError(f"cuDeviceGetByPCIBusId failed: no device at {which}")
            self.bus_id = which
        else:
            self.bus_id = Driver.bus_ids[which]
        Driver.opened.append(which)

    def retain_primary_context(self):
        Driver.retained.append(self.bus_id)
        return FakeContextObject(self)


class FakeAllocation:
    def __init__(self, nbytes: int):
        Driver.current()
        Driver.next_address += 1 << 20
        self.address = Driver.next_address
        Driver.memory[self.address] = np.zeros(nbytes, np.uint8)

    def __int__(self) -> int:
        return self.address

    def free(self):
        Driver.current()
        del Driver.memory[self.address]


class FakeStream:
    def __init__(self):
        Driver.current()
        self.handle = 7

    def synchronize(self):
        Driver.current()


class Driver(types.ModuleType):
    """``pycuda.driver``: class-level state, since pycuda's is process-wide too."""

    initialised = False
    bus_ids: ClassVar[list[str]] = []
    memory: ClassVar[dict[int, np.ndarray]] = {}
    next_address = 0
    opened: ClassVar[list] = []
    retained: ClassVar[list[str]] = []
    detached: ClassVar[list[str]] = []
    _local = threading.local()
    Error = CudaError
    Device = FakeDevice
    Context = FakeContextObject
    Stream = FakeStream

    def __init__(self, bus_ids: list[str]):
        super().__init__("pycuda.driver")
        cls = type(self)
        cls.initialised, cls.bus_ids, cls.memory = False, list(bus_ids), {}
        cls.opened, cls.retained, cls.detached = [], [], []
        cls._local = threading.local()

    @staticmethod
    def init():
        Driver.initialised = True

    @classmethod
    def stack(cls) -> list:
        if not hasattr(cls._local, "stack"):
            cls._local.stack = []
        return cls._local.stack

    @classmethod
    def current(cls):
        if not cls.stack():
            raise CudaError("CUDA_ERROR_INVALID_CONTEXT: no context is current in this thread")
        return cls.stack()[-1]

    @staticmethod
    def mem_alloc(nbytes: int):
        return FakeAllocation(nbytes)

    @staticmethod
    def pagelocked_empty(count: int, dtype):
        return np.empty(count, dtype)

    @staticmethod
    def memcpy_htod_async(destination, source: np.ndarray, stream):
        Driver.current()
        flat = np.ascontiguousarray(source).view(np.uint8).ravel()
        Driver.memory[int(destination)][: flat.size] = flat

    @staticmethod
    def memcpy_dtoh_async(destination: np.ndarray, source, stream):
        Driver.current()
        flat = destination.view(np.uint8).reshape(-1)
        flat[:] = Driver.memory[int(source)][: flat.size]


def install(monkeypatch, trt: FakeTensorRT | None = None, bus_ids=("0000:1b:00.0",)) -> tuple[FakeTensorRT, Driver]:
    """Puts both fakes where ``import tensorrt`` and ``import pycuda.driver`` find them, and forgets
    the process's opened CUDA devices (runtime.cuda_device keeps them for the process)."""
    from deploy_sdk_backends.tensorrt import build, runtime

    trt = trt or FakeTensorRT()
    driver = Driver(list(bus_ids))
    pycuda = types.ModuleType("pycuda")
    pycuda.__spec__ = importlib.machinery.ModuleSpec("pycuda", None, is_package=True)
    pycuda.__path__ = []
    pycuda.driver = driver
    driver.__spec__ = importlib.machinery.ModuleSpec("pycuda.driver", None)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setattr(runtime, "_devices", {})
    build.logger_for.cache_clear()  # one logger per trt module
    return trt, driver
