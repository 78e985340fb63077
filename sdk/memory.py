"""How much memory a run may use, and what counts as absurd on this machine.

The budget is what one engine run (one tile, or the whole image) may take. Its default is a quarter
of the memory available when it is asked for (on a GPU, also no more than a quarter of what the GPU
has free), capped at 1 GiB: tiles of a few hundred pixels a side
already run as fast per pixel as the whole image (their margins are a few per cent of the work), so
more memory would only be taken from the other programs on the machine. benchmarks/photos.py measures
what this costs.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from .errors import InputError

ENV = "SDK_MEMORY_BUDGET"
SHARE = 0.25
CAP = 2**30
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value, name: str = "") -> int:
    """Bytes from an int or a text such as "2GiB", "1.5G", "800MB" (decimal units, or binary with i).
    ``name``, where the value came from (a flag, a variable), heads the error."""
    try:
        return _parse_size(value)
    except InputError as exc:
        raise InputError(f"{name}: {exc}" if name else str(exc)) from None


def _parse_size(value) -> int:
    if isinstance(value, bool):
        raise InputError(f"memory size {value!r} is not a size; pass bytes or a text such as '2GiB'")
    if isinstance(value, (int, float)):
        size = int(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        unit = match and _UNITS.get(match.group(2).lower())
        if not match or unit is None:
            raise InputError(f"memory size {value!r} is not a size; write it like 2GiB, 1.5G or 800MB")
        size = int(float(match.group(1)) * unit)
    if size <= 0:
        raise InputError(f"memory size {value!r} must be more than zero")
    return size


# Every image asks how much memory is free; psutil reads /proc/meminfo for that (about 0.1 ms, a
# third of the SDK's whole cost on a 32x32 image), and sizing decisions need no fresher figure than this.
_FRESH_S = 0.5
_last_reading = (float("-inf"), 0)


def available() -> int:
    """Bytes of memory the machine can give now without swapping (a reading at most 0.5 s old)."""
    global _last_reading
    taken, value = _last_reading
    now = time.monotonic()
    if now - taken > _FRESH_S:
        import psutil

        value = int(psutil.virtual_memory().available)
        _last_reading = (now, value)  # one tuple: threads see an old or a new reading, never half
    return value


def total() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def device_memory(device: str) -> int | None:
    """Total memory of a CUDA device, None for the CPU (or when NVML cannot tell)."""
    if not device.startswith("cuda"):
        return None
    from .devices import gpu, parse_device

    parsed = parse_device(device)
    found = gpu(parsed) if parsed is not None else None
    return found.memory_bytes if found else None


_device_readings: dict[str, tuple[float, int | None]] = {}


def device_available(device: str) -> int | None:
    """Bytes free now on a CUDA device (a reading at most 0.5 s old, as for the host's), else its total
    when NVML cannot say what is free; None for the CPU. Another process's tensors on a shared GPU are
    not ours to plan with."""
    if not device.startswith("cuda"):
        return None
    taken, value = _device_readings.get(device, (float("-inf"), None))
    now = time.monotonic()
    if now - taken > _FRESH_S:
        from .devices import gpu, parse_device
        from .nvml import free_bytes

        parsed = parse_device(device)
        found = gpu(parsed) if parsed is not None else None
        value = None if found is None else (free_bytes(found.uuid) if found.uuid else None) or found.memory_bytes
        _device_readings[device] = (now, value)
    return value


# Every call reads $SDK_MEMORY_BUDGET, so that a change shows on the next call. os.environ.get runs
# about 15 us of Python (the mapping's methods, the key's encoding) with the caches as cold as an
# engine run leaves them: a tenth of the SDK's whole cost on a 32x32 image. os.environ keeps its
# encoded dict current on every write through it, the only writes os.environ.get sees either, so the
# lookup goes to that dict where the interpreter has one (CPython, PyPy), with the key encoded once.
_ENVIRON = os.environ
_RAW: Any = getattr(_ENVIRON, "_data", None)
_RAW_KEY = _ENVIRON.encodekey(ENV) if _RAW is not None and hasattr(_ENVIRON, "encodekey") else None


def _from_environment() -> str | None:
    if _RAW_KEY is None:
        return _ENVIRON.get(ENV)
    raw = _RAW.get(_RAW_KEY)
    return None if raw is None else _ENVIRON.decodevalue(raw)


def budget(value=None, device: str = "cpu") -> int:
    """The memory budget in bytes: ``value``, else $SDK_MEMORY_BUDGET, else the default share."""
    if value is None:
        value = _from_environment() or None
        if value is not None:
            return parse_size(value, f"${ENV}")
    if value is not None:
        return parse_size(value)
    share = min(int(available() * SHARE), CAP)
    on_device = device_available(device) if device != "cpu" else None  # the CPU's is the machine's: no call
    return min(share, int(on_device * SHARE)) if on_device else share


def gib(size: float) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**28 else f"{size / 2**20:.0f} MiB"
