"""A description of the machine a benchmark ran on, for the record: numbers mean little without it.

Library versions come from package metadata, not imports, so describing the machine never loads
torch or an engine into the parent process.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

# The engines' own versions come from the backends' probes (see describe_machine), not from a list.
LIBRARIES = ("deploy-sdk", "numpy", "onnx", "torch", "pillow", "scikit-image")
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def _versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def describe_machine(note: str = "") -> dict:
    import psutil

    from ..devices import cpu_info
    from ..selection import gpu_summary, list_backends

    info = cpu_info()
    flags = set(info.get("flags", "").split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_features": [f for f in CPU_FEATURES if f in flags],
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpu_summary(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": _versions(),
        # Each backend's probe details (engine version, GPU ...) and the distribution that provides it.
        "backends": {
            b.name: {"distribution": f"{b.distribution} {b.version}", "available": b.available, **b.details}
            for b in list_backends()
            if not b.load_error
        },
        # How busy the machine was when the run began: other jobs make absolute times unreliable.
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "note": note,
    }
