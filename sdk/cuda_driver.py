"""CUDA's own device numbering, asked of the driver (libcuda) through ctypes: no toolkit, no engine.

Only sdk.devices calls this, and only on a machine with GPUs of different kinds, where NVML cannot
tell which one CUDA numbers first. ``cuInit`` creates no context, but it does start the driver in
this process (a child forked afterwards cannot use CUDA), so it is not asked otherwise.
"""

from __future__ import annotations

import ctypes
import sys


def device_uuids() -> list[str] | None:
    """The UUIDs ("1a2b3c4d-...", no prefix) of CUDA's devices in CUDA's order, after
    ``CUDA_VISIBLE_DEVICES``; None when the driver cannot say."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    if cuda.cuInit(0) != 0:
        return None
    count = ctypes.c_int()
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return None
    # _v2 answers a MIG slice's own UUID (the plain call answers its board's).
    get_uuid = getattr(cuda, "cuDeviceGetUuid_v2", None) or cuda.cuDeviceGetUuid
    found = []
    for ordinal in range(count.value):
        device = ctypes.c_int()
        raw = (ctypes.c_ubyte * 16)()
        if cuda.cuDeviceGet(ctypes.byref(device), ordinal) != 0 or get_uuid(raw, device) != 0:
            return None
        found.append(format_uuid(bytes(raw)))
    return found


def format_uuid(raw: bytes) -> str:
    """16 bytes as NVML writes them after "GPU-" / "MIG-": 8-4-4-4-12 lower-case hex digits."""
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
