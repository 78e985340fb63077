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
from typing import Any

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
    memory_bytes: int  # a MIG slice's own memory, not its board's
    uuid: str = ""  # "GPU-..." or, for a MIG slice, "MIG-..."
    pci_bus_id: str = ""  # "0000:3b:00.0": how a library that numbers devices its own way finds this one


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
        from .nvml import read_boards

        boards = read_boards()
    except Exception:  # NVMLError, OSError from a half-installed driver, anything: no GPU
        return ()
    return tuple(
        GPU(i, b.name, b.compute_capability, b.memory_bytes, b.uuid, b.pci_bus_id)
        for i, b in enumerate(numbered(boards))
    )


def numbered(boards: list[Any]) -> list[Any]:
    """The devices CUDA will see, in CUDA's order: boards, or the MIG slices of boards in MIG mode.

    NVML's order is not CUDA's: CUDA puts the fastest GPU first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
    and ``CUDA_VISIBLE_DEVICES`` numbers by that order. On a machine of identical boards the fastest-first
    order is the PCI order; on a mixed one only the driver knows it, so it is asked (that initialises the
    CUDA driver in this process, which a mixed machine's numbering is worth).
    """
    boards = sorted(boards, key=lambda b: b.pci_bus_id)
    mixed = len({(b.name, b.compute_capability, b.memory_bytes) for b in boards}) > 1
    if mixed and os.environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST").upper() != "PCI_BUS_ID":
        from .cuda_driver import device_uuids

        order = device_uuids()  # already filtered and ordered by CUDA_VISIBLE_DEVICES
        if order is not None:
            by_hex = {_hex(d.uuid): d for b in boards for d in (b, *b.slices)}
            return [by_hex[u] for u in order if u in by_hex]
    return _one_mig_slice(_visible(boards))


def _visible(boards: list[Any]) -> list[Any]:
    """What ``CUDA_VISIBLE_DEVICES`` lets CUDA see of ``boards`` (in PCI order), in its order."""
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return [d for b in boards for d in _usable(b)]
    chosen: list[Any] = []
    for token in (t.strip() for t in spec.split(",")):
        found = _resolve(token, boards)
        # CUDA stops at the first entry it cannot resolve (or names twice); so do we.
        if not found or any(d in chosen for d in found):
            break
        chosen.extend(found)
    return chosen


def _resolve(token: str, boards: list[Any]) -> list[Any]:
    if token.isdigit():
        return _usable(boards[int(token)]) if int(token) < len(boards) else []
    if token.startswith("MIG-GPU-"):  # the R450 spelling: MIG-GPU-<board uuid>/<GPU instance>/<compute instance>
        board_uuid, _, rest = token[len("MIG-") :].partition("/")
        board = _unique([b for b in boards if b.uuid.startswith(board_uuid)])
        if board is None:
            return []
        ids = tuple(int(x) for x in rest.split("/") if x.isdigit())
        return [s for s in board.slices if s.instance == ids][:1]
    if token.startswith("MIG-"):
        found = _unique([s for b in boards for s in b.slices if s.uuid.startswith(token)])
        return [found] if found is not None else []
    if token.startswith("GPU-"):
        board = _unique([b for b in boards if b.uuid.startswith(token)])
        return _usable(board) if board is not None else []
    return []


def _usable(board: Any) -> list[Any]:
    """A board in MIG mode runs CUDA only through its slices (none when no slice was created)."""
    return list(board.slices) if board.mig_enabled else [board]


def _one_mig_slice(devices: list[Any]) -> list[Any]:
    """CUDA 11 and 12 enumerate a single MIG slice per process (NVIDIA's MIG user guide): the first."""
    seen = False
    kept = []
    for device in devices:
        if device.parent:
            if seen:
                continue
            seen = True
        kept.append(device)
    return kept


def _unique(found: list[Any]) -> Any:
    return found[0] if len(found) == 1 else None  # an ambiguous prefix names nothing, as in CUDA


def _hex(uuid: str) -> str:
    return uuid.split("-", 1)[1].lower() if "-" in uuid else uuid.lower()


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
