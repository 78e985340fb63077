"""The TensorRT backend ``trt``: engines built from the ONNX file, cached on disk, run through pycuda.

Importing this package (which plugin discovery does) imports neither tensorrt nor pycuda: the probe
looks for them without loading them until a GPU is known to be there, and sessions load them.

    graph.py     pure-ONNX rewrites: the runtime factor baked in, fp16 conversion
    profiles.py  optimisation profiles: given, derived, widened
    cache.py     engine cache: content key, header + checksum, atomic write, file lock
    build.py     ONNX -> network -> config -> engine bytes, build progress
    runtime.py   pycuda: context, pinned and device buffers, stream, execute_async_v3
    session.py   the Session: one engine per factor value in a small LRU
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from sdk import hookimpl
from sdk.backend import Availability, Backend, Session
from sdk.devices import Device, describe_missing_gpu, gpu
from sdk.errors import BackendUnavailableError

from .build import INSTALL, MIN_MAJOR, import_tensorrt, minimum_compute_capability, version_of
from .options import HELP, TrtOptions

TENSORRT_MISSING = (
    f"TensorRT is not installed: {INSTALL} (its libraries come from NVIDIA's package index, "
    "pypi.nvidia.com, which must be reachable)"
)
PYCUDA_MISSING = (
    f"pycuda is not installed: {INSTALL} (pycuda builds from source and needs the CUDA toolkit: nvcc, headers)"
)


class TensorRTBackend(Backend):
    name = "trt"
    devices = ("cuda",)
    options = tuple(HELP)
    priority = 300  # above ort-cuda (200): when TensorRT really runs here, it is the fastest

    def _probe(self, device: Device) -> Availability:
        # find_spec looks for the packages without importing them: no libnvinfer load on a machine
        # that could not use it anyway. Every missing piece is named, not just the first.
        problems = []
        if importlib.util.find_spec("tensorrt") is None:
            problems.append(TENSORRT_MISSING)
        if importlib.util.find_spec("pycuda") is None:
            problems.append(PYCUDA_MISSING)
        found = gpu(device)
        if found is None:
            problems.append(describe_missing_gpu(device))
        if problems:
            return Availability.no("; ".join(problems))
        try:
            trt = import_tensorrt()
            from .runtime import import_pycuda

            import_pycuda()
        except BackendUnavailableError as exc:
            return Availability.no(str(exc))
        version = version_of(trt)
        if version[0] < MIN_MAJOR:
            return Availability.no(
                f"TensorRT {trt.__version__} is too old: the trt backend needs TensorRT {MIN_MAJOR} or newer; "
                f"pip install -U 'deploy-sdk[trt]'"
            )
        need = minimum_compute_capability(version)
        if tuple(found.compute_capability) < need:
            have = "%d.%d" % found.compute_capability
            return Availability.no(
                f"{found.name} on {device} has compute capability {have}; TensorRT {trt.__version__} needs "
                f"{need[0]}.{need[1]} or newer (Volta support ended in TensorRT 10.5): use backend='ort-cuda'"
            )
        return Availability.yes(
            tensorrt=trt.__version__, gpu=found.name, compute_capability="%d.%d" % found.compute_capability
        )

    def create_session(self, model, device: Device, options: Mapping[str, Any]) -> Session:
        parsed = TrtOptions.parse(options)  # a bad option is the caller's to fix, whatever the machine
        found = gpu(device)
        if found is None:
            raise BackendUnavailableError(describe_missing_gpu(device))
        from .session import TensorRTSession

        return TensorRTSession(model, device, found, parsed)


@hookimpl
def sdk_backends():
    return [TensorRTBackend()]
