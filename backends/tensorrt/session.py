"""A model on TensorRT: engines built on demand, one per value of the shape inputs, kept in an LRU.

The runtime-scale ``srcnn3`` takes its factor as a float input that TensorRT cannot build as a
shape tensor, so each factor value gets its own engine from a graph with that value baked in
(graph.specialise). Engines are built the first time a (factor, shape range) is needed, then found
in the on-disk cache by every later process.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.backend import Session
from sdk.devices import GPU, Device
from sdk.errors import InputError, SDKError

from . import graph, profiles
from .build import BuildProgress, build, fp16_in_graph, import_tensorrt, logger_for
from .cache import EngineCache, EngineKey
from .options import TrtOptions
from .runtime import EngineRunner, IncompatibleEngine, cuda_device

log = logging.getLogger(__name__)

# ((input name, shape, values), ...) of the shape inputs, e.g. (("factor", (4,), (1.0, 1.0, 3.0, 3.0)),)
Specialisation = tuple[tuple[str, tuple[int, ...], tuple[float, ...]], ...]


@dataclass
class _Loaded:
    runner: EngineRunner
    profile: profiles.Profile


def specialisation_of(feeds: Mapping[str, np.ndarray], names) -> Specialisation:
    """The shape inputs' values in ``feeds``, as a hashable key."""
    specialisation = []
    for name in names:
        array = np.asarray(feeds[name])
        specialisation.append((name, tuple(int(d) for d in array.shape), tuple(float(v) for v in array.ravel())))
    return tuple(specialisation)


def engine_key(
    model_sha256: str,
    specialisation: Specialisation,
    profile: profiles.Profile,
    options: TrtOptions,
    tensorrt_version: str,
    gpu: GPU,
) -> EngineKey:
    return EngineKey(
        model_sha256=model_sha256,
        specialisation=specialisation,
        profile=profile.canonical(),
        precision=options.precision,
        tensorrt_version=tensorrt_version,
        gpu_name=gpu.name,
        compute_capability=tuple(gpu.compute_capability),
        builder=options.settings.key_items(),
    )


def prepare_onnx(model, specialisation: Specialisation, fp16: bool, work: Path) -> tuple[Path, list[tuple[str, str]]]:
    """The ONNX file TensorRT parses: the model itself, or a rewritten copy written into ``work``.

    Also returns (name, op_type) of its nodes, to name the node of a parser error.
    """
    if not specialisation and not fp16:
        # Unchanged: parse the original so that external weight files next to it resolve.
        return model.path, [(n.name, n.op_type) for n in model.proto.graph.node]
    proto = graph.load_with_weights(model.path)
    if specialisation:
        proto = graph.specialise(
            proto, {name: np.asarray(v, dtype=np.float64).reshape(shape) for name, shape, v in specialisation}
        )
    if fp16:
        proto = graph.to_fp16(proto)
    return graph.save(proto, work / "model.onnx"), [(n.name, n.op_type) for n in proto.graph.node]


class TensorRTSession(Session):
    def __init__(self, model, device: Device, gpu: GPU, options: TrtOptions):
        self._model = model
        self._gpu = gpu
        self._options = options
        self.inputs = tuple(model.inputs)
        self.outputs = tuple(model.outputs)
        self._shape_inputs = graph.shape_inputs(model.proto)
        self._engine_inputs = [i for i in model.inputs if i.name not in self._shape_inputs]
        specialised = sorted(set(options.profile or {}) & set(self._shape_inputs))
        if specialised:
            raise InputError(
                f"profile names {specialised}, but those inputs set output sizes: the engine is built "
                "for each of their values, so they take no profile; leave them out"
            )
        self._given = profiles.parse_option(options.profile, self._engine_inputs)
        self._cache = EngineCache(options.cache_dir, options.lock_timeout)
        # Checked last: a mistake in the options should not cost a CUDA context.
        self._trt = import_tensorrt()
        self._device = cuda_device(gpu)
        self._engines: OrderedDict[Specialisation, _Loaded] = OrderedDict()
        # One lock for the whole run: execution contexts are not thread-safe, and a build must not
        # race an eviction. Threads wanting parallel GPU work should each make a Predictor.
        self._lock = threading.Lock()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        specialisation = specialisation_of(feeds, self._shape_inputs)
        shapes = {i.name: tuple(feeds[i.name].shape) for i in self._engine_inputs}
        with self._lock:
            if self._engines is None:
                raise SDKError("this TensorRT session is closed; create a new Predictor")
            loaded = self._engine_for(specialisation, shapes)
            outputs = loaded.runner.run({i.name: feeds[i.name] for i in self._engine_inputs})
        # TensorRT may compute an int64 output as int32; hand back what the model declares.
        return {o.name: outputs[o.name].astype(o.dtype, copy=False) for o in self.outputs}

    # -- engines ------------------------------------------------------------------------------------

    def _engine_for(self, specialisation: Specialisation, shapes) -> _Loaded:
        loaded = self._engines.get(specialisation)
        if loaded is not None:
            self._engines.move_to_end(specialisation)
            misses = loaded.profile.outside(shapes)
            if not misses:
                return loaded
        else:
            misses = [name for name, r in self._given.items() if not r.contains(shapes[name])]
        fixed = [name for name in misses if name in self._given]
        if fixed:
            raise InputError(
                profiles.describe_miss(profiles.Profile(tuple(self._given.items())), fixed[0], shapes[fixed[0]])
            )
        previous = loaded.profile if loaded is not None else None
        profile = profiles.derive(self._engine_inputs, shapes, self._given, previous)
        if loaded is not None:
            log.warning(
                "input shapes %s are outside the engine's profile; building a wider one (cached afterwards)", shapes
            )
        runner = self._load(specialisation, profile)
        if loaded is not None:
            loaded.runner.close()
        self._engines[specialisation] = _Loaded(runner, profile)
        self._engines.move_to_end(specialisation)
        while len(self._engines) > self._options.max_engines:
            _, evicted = self._engines.popitem(last=False)
            evicted.runner.close()
        return self._engines[specialisation]

    def _load(self, specialisation: Specialisation, profile: profiles.Profile) -> EngineRunner:
        trt = self._trt
        key = engine_key(self._model.sha256, specialisation, profile, self._options, trt.__version__, self._gpu)
        what = self._describe(specialisation)
        description = {"model": str(self._model.path), "what": what}

        def build_now() -> bytes:
            log.warning(
                "building a TensorRT engine for %s on %s; this can take minutes, and is cached in %s",
                what,
                self._gpu.name,
                self._cache.root,
            )
            timing_path = self._cache.timing_path(trt.__version__, self._gpu.name, self._gpu.compute_capability)
            with tempfile.TemporaryDirectory(prefix="sdk-trt-") as work:
                onnx_path, nodes = prepare_onnx(
                    self._model, specialisation, fp16_in_graph(trt, self._options.precision), Path(work)
                )
                progress = BuildProgress(what) if self._options.progress else None
                with self._device.active():
                    engine, timing = build(
                        trt,
                        onnx_path,
                        nodes,
                        profile,
                        self._options.settings,
                        self._cache.load_timing(timing_path),
                        what,
                        progress,
                    )
            if timing:  # b"": TensorRT did not take the cache, and the file must keep what it has
                self._cache.store_timing(timing_path, timing)
            return engine

        payload, built = self._cache.get_or_build(key, build_now, description)
        try:
            return EngineRunner(trt, logger_for(trt), payload, self._device)
        except IncompatibleEngine as exc:
            if built:
                raise SDKError(f"TensorRT built an engine for {what} that it then could not load: {exc}") from exc
            self._cache.discard(key, str(exc))
            payload, _ = self._cache.get_or_build(key, build_now, description)
            return EngineRunner(trt, logger_for(trt), payload, self._device)

    def _describe(self, specialisation: Specialisation) -> str:
        values = ", ".join(f"{name}={[_number(x) for x in v]}" for name, _, v in specialisation)
        return f"{self._model.name} ({values + ', ' if values else ''}{self._options.precision})"

    def close(self) -> None:
        with self._lock:
            if self._engines is None:
                return
            for loaded in self._engines.values():
                loaded.runner.close()
            self._engines = None  # the GPU's primary context stays: it is the process's (runtime.cuda_device)


def _number(value: float):
    return int(value) if float(value).is_integer() else value
