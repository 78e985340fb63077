"""What NVML says about this machine's GPUs: each board, and the MIG slices of a board in MIG mode.

NVML (the ``nvidia-ml-py`` bindings) creates no CUDA context, so a host can probe and then fork.
It numbers boards its own way, which is not CUDA's (sdk.devices turns these records into CUDA's
numbering). Each board is read on its own: one that NVML refuses (a container without access to it,
a GPU that fell off the bus) is left out instead of hiding the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Board:
    """One physical GPU, or one MIG slice of one (``parent`` is then the board's UUID)."""

    name: str
    compute_capability: tuple[int, int]
    memory_bytes: int
    uuid: str  # "GPU-<hex>" for a board, "MIG-<hex>" for a slice
    pci_bus_id: str  # "0000:3b:00.0"; a slice has its board's
    parent: str = ""
    mig_enabled: bool = False  # a board in MIG mode: CUDA sees its slices, never the board itself
    slices: tuple[Board, ...] = ()
    instance: tuple[int, int] | None = None  # a slice's (GPU instance id, compute instance id)


def read_boards() -> list[Board]:
    """Every board NVML can open, with its MIG slices; raises when NVML itself cannot start."""
    import pynvml  # small, pure Python; the driver's library is loaded by nvmlInit

    pynvml.nvmlInit()
    try:
        boards = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                boards.append(_board(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)))
            except pynvml.NVMLError as exc:
                # No permission, lost from the bus, ...: CUDA cannot use it either.
                log.debug("NVML cannot read GPU %d (%s); leaving it out", index, exc)
        return boards
    finally:
        pynvml.nvmlShutdown()


def free_bytes(uuid: str) -> int | None:
    """Memory free now on the GPU or MIG slice with this UUID (other processes' use taken off); None
    when NVML cannot tell."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: nothing to tell
        return None
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByUUID(uuid)).free)
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def _board(pynvml, handle) -> Board:
    uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
    capability = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))
    board = Board(
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        compute_capability=(int(capability[0]), int(capability[1])),
        memory_bytes=_memory(pynvml, handle),
        uuid=uuid,
        pci_bus_id=normal_bus_id(_text(pynvml.nvmlDeviceGetPciInfo(handle).busId)),
    )
    if not _mig_enabled(pynvml, handle):
        return board
    slices = []
    for index in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            slices.append(_slice(pynvml, pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, index), board))
        except pynvml.NVMLError:  # NOT_FOUND: an empty slot; anything else: that slice alone is out
            continue
    return replace(board, mig_enabled=True, slices=tuple(slices))


def _slice(pynvml, handle, board: Board) -> Board:
    return Board(
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        compute_capability=board.compute_capability,  # NVML does not answer this for a slice
        memory_bytes=_memory(pynvml, handle),  # the slice's own memory, not the board's
        uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
        pci_bus_id=board.pci_bus_id,
        parent=board.uuid,
        instance=(int(pynvml.nvmlDeviceGetGpuInstanceId(handle)), int(pynvml.nvmlDeviceGetComputeInstanceId(handle))),
    )


def _mig_enabled(pynvml, handle) -> bool:
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:  # NOT_SUPPORTED: a GPU without MIG
        return False
    return current == pynvml.NVML_DEVICE_MIG_ENABLE


def _memory(pynvml, handle) -> int:
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    except pynvml.NVMLError:
        return 0  # unknown: the memory budget then falls back to the host's share


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def normal_bus_id(text: str) -> str:
    """A PCI bus id in one spelling: NVML writes "00000000:3B:00.0", CUDA "0000:3b:00.0"."""
    parts = text.strip().lower().split(":")
    if len(parts) != 3:
        return text.strip().lower()
    domain, bus, rest = parts
    try:
        return f"{int(domain, 16):04x}:{bus}:{rest}"
    except ValueError:
        return text.strip().lower()
