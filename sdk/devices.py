"""Which devices this machine has, found without importing torch or any engine.

GPUs are listed through NVML (the ``nvidia-ml-py`` bindings) rather than the CUDA driver API:
NVML creates no CUDA context, so a host that probes and then forks worker processes keeps working
(PyTorch counts devices through NVML for the same reason). ``CUDA_VISIBLE_DEVICES`` is honoured so
that our indices are the ones the engines will use. A missing or broken driver means "no GPU".
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from .errors import InputError

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A device a session runs on: ``cpu``, or ``cuda`` with the index CUDA will use."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


@dataclass(frozen=True)
class GPU:
    index: int  # as CUDA numbers it in this process (after CUDA_VISIBLE_DEVICES)
    name: str
    compute_capability: tuple[int, int]
    memory_bytes: int
    uuid: str = ""


def parse_device(text: str | Device) -> Device | None:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` -> Device; ``"auto"`` -> None (the selection decides)."""
    if isinstance(text, Device):
        return text
    if not isinstance(text, str):
        raise InputError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', not {text!r}")
    spec = text.strip().lower()
    if spec == "auto":
        return None
    match = _DEVICE.match(spec)
    if not match:
        raise InputError(f"unknown device {text!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu" and index not in (None, "0"):
        raise InputError(f"unknown device {text!r}: the CPU is just 'cpu'")
    return Device(kind, int(index or 0))


@functools.lru_cache(maxsize=1)
def cuda_gpus() -> tuple[GPU, ...]:
    """The CUDA GPUs visible to this process; () when there is no driver or it is broken."""
    try:
        return tuple(_nvml_gpus())
    except Exception:  # NVMLError, OSError from a half-installed driver, anything: no GPU
        return ()


def _nvml_gpus() -> list[GPU]:
    import pynvml  # small, pure Python; the driver's library is loaded by nvmlInit

    pynvml.nvmlInit()
    try:
        physical = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            physical.append(
                (
                    name.decode() if isinstance(name, bytes) else name,
                    tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)),
                    int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    _text(pynvml.nvmlDeviceGetUUID(handle)),
                )
            )
    finally:
        pynvml.nvmlShutdown()
    visible = _visible(physical)
    return [GPU(index, *physical[p]) for index, p in enumerate(visible)]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _visible(physical: list[tuple]) -> list[int]:
    """Physical indices in the order CUDA will number them, per CUDA_VISIBLE_DEVICES."""
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(len(physical)))
    chosen: list[int] = []
    for token in (t.strip() for t in spec.split(",")):
        # CUDA stops at the first entry it cannot resolve; so do we.
        if token.isdigit() and int(token) < len(physical):
            found = int(token)
        else:
            found = next((i for i, p in enumerate(physical) if token and p[3].startswith(token)), None)
        if found is None or found in chosen:
            break
        chosen.append(found)
    return chosen


def gpu(device: Device) -> GPU | None:
    """The GPU behind ``device``, or None when it is not a present CUDA device."""
    if device.kind != "cuda":
        return None
    gpus = cuda_gpus()
    return gpus[device.index] if device.index < len(gpus) else None


def describe_missing_gpu(device: Device) -> str:
    """A reason sentence for a backend that needs ``device`` but cannot find it."""
    gpus = cuda_gpus()
    if not gpus:
        return "no CUDA GPU found (NVML reports none: no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)"
    return f"{device} does not exist: this machine has {len(gpus)} CUDA GPU(s), cuda:0..cuda:{len(gpus) - 1}"


def cpu_cores() -> int:
    """Cores this process may use, counting each physical core once: the sweet spot for an engine's
    intra-op threads (hyper-threads share the vector units that convolutions saturate)."""
    import psutil

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    physical = psutil.cpu_count(logical=False) or allowed
    return max(1, min(physical, allowed))


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (``model name``, ``flags`` ...); {} elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break  # the first processor says all we need
    except OSError:
        pass
    return fields
