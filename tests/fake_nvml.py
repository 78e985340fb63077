"""A stand-in for the NVML calls sdk.nvml makes, answering for boards and MIG slices described in
plain Python, so that GPU discovery runs in tests on machines without a GPU."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeSlice:
    name: str
    memory: int
    uuid: str
    instance: tuple[int, int]


@dataclass
class FakeBoard:
    name: str
    capability: tuple[int, int]
    memory: int
    uuid: str
    bus_id: str  # as NVML writes it: "00000000:3B:00.0"
    slices: list[FakeSlice] | None = None  # None: MIG not supported; a list: MIG mode on
    refused: bool = False  # NVML answers NO_PERMISSION for its handle
    slots: int = 7
    slice_refused: set[int] = field(default_factory=set)
    used: int = 0  # bytes other processes hold on it


class FakeNvml:
    def __init__(self, boards: list[FakeBoard]):
        self.boards = boards
        self.initialised = 0

    def install(self, monkeypatch) -> None:
        import pynvml

        self.error = pynvml.NVMLError
        self.enable = pynvml.NVML_DEVICE_MIG_ENABLE
        calls = {
            "nvmlInit": self.init,
            "nvmlShutdown": self.shutdown,
            "nvmlDeviceGetCount": lambda: len(self.boards),
            "nvmlDeviceGetHandleByIndex": self.handle,
            "nvmlDeviceGetName": lambda h: self._of(h).name,
            "nvmlDeviceGetCudaComputeCapability": self.capability,
            "nvmlDeviceGetMemoryInfo": self.memory_info,
            "nvmlDeviceGetHandleByUUID": self.handle_by_uuid,
            "nvmlDeviceGetUUID": lambda h: self._of(h).uuid.encode(),
            "nvmlDeviceGetPciInfo": lambda h: type("Pci", (), {"busId": self.boards[h].bus_id.encode()})(),
            "nvmlDeviceGetMigMode": self.mig_mode,
            "nvmlDeviceGetMaxMigDeviceCount": lambda h: self.boards[h].slots,
            "nvmlDeviceGetMigDeviceHandleByIndex": self.slice_handle,
            "nvmlDeviceGetGpuInstanceId": lambda h: self._of(h).instance[0],
            "nvmlDeviceGetComputeInstanceId": lambda h: self._of(h).instance[1],
        }
        for name, call in calls.items():
            monkeypatch.setattr(pynvml, name, call)

    def init(self) -> None:
        self.initialised += 1

    def shutdown(self) -> None:
        self.initialised -= 1

    def handle(self, index: int) -> int:
        if self.boards[index].refused:
            raise self.error(4)  # NVML_ERROR_NO_PERMISSION
        return index

    def capability(self, handle):
        if isinstance(handle, tuple):
            raise self.error(3)  # NOT_SUPPORTED on a MIG handle, as on real drivers
        return self.boards[handle].capability

    def mig_mode(self, handle):
        if self.boards[handle].slices is None:
            raise self.error(3)
        return [self.enable, self.enable]

    def slice_handle(self, handle: int, index: int):
        board = self.boards[handle]
        if index in board.slice_refused:
            raise self.error(4)
        if index >= len(board.slices):
            raise self.error(6)  # NOT_FOUND: an empty slot
        return (handle, index)

    def memory_info(self, handle):
        found = self._of(handle)
        used = getattr(found, "used", 0)
        return type("Memory", (), {"total": found.memory, "free": found.memory - used, "used": used})()

    def handle_by_uuid(self, uuid: bytes | str):
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for index, board in enumerate(self.boards):
            if board.uuid == uuid:
                return index
            for number, piece in enumerate(board.slices or []):
                if piece.uuid == uuid:
                    return (index, number)
        raise self.error(13)  # NVML_ERROR_NOT_FOUND

    def _of(self, handle):
        if isinstance(handle, tuple):
            return self.boards[handle[0]].slices[handle[1]]
        return self.boards[handle]
