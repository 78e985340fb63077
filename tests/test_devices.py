"""Device parsing and GPU discovery: a missing or broken driver is "no GPU", never an exception."""

import copy

import pytest
from fake_nvml import FakeBoard, FakeNvml, FakeSlice

from sdk import devices, memory
from sdk.devices import Device, parse_device
from sdk.errors import InputError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("auto", None),
        ("cpu", Device("cpu")),
        ("CUDA", Device("cuda", 0)),
        ("cuda:1", Device("cuda", 1)),
        (" cuda:0 ", Device("cuda", 0)),
    ],
)
def test_parse(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:1", "", 3])
def test_parse_rejects(text):
    with pytest.raises(InputError, match="device"):
        parse_device(text)


def test_str():
    assert str(Device("cuda", 2)) == "cuda:2" and str(Device("cpu")) == "cpu"


H100 = FakeBoard("NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30, "GPU-aaaa", "00000000:1A:00.0")
A10 = FakeBoard("NVIDIA A10", (8, 6), 24 * 2**30, "GPU-bbbb", "00000000:3B:00.0")


@pytest.fixture
def nvml(monkeypatch):
    """Installs a FakeNvml for the boards given; CUDA's driver is never asked (it says it cannot tell)."""
    from sdk import cuda_driver

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setattr(cuda_driver, "device_uuids", lambda: None)
    devices.cuda_gpus.cache_clear()

    def install(*boards: FakeBoard) -> FakeNvml:
        fake = FakeNvml([copy.deepcopy(b) for b in boards])
        fake.install(monkeypatch)
        devices.cuda_gpus.cache_clear()
        memory._device_readings.clear()
        return fake

    yield install
    devices.cuda_gpus.cache_clear()
    memory._device_readings.clear()


@pytest.fixture
def fake_nvml(nvml, monkeypatch):
    """NVML answering for two physical GPUs of different kinds."""
    nvml(H100, A10)
    return monkeypatch


def test_gpus_through_nvml(fake_nvml):
    gpus = devices.cuda_gpus()
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA A10"]
    assert gpus[0].compute_capability == (9, 0) and gpus[1].memory_bytes == 24 * 2**30
    assert devices.gpu(Device("cuda", 1)).name == "NVIDIA A10"
    assert devices.gpu(Device("cuda", 2)) is None and devices.gpu(Device("cpu")) is None
    assert "cuda:0..cuda:1" in devices.describe_missing_gpu(Device("cuda", 5))


@pytest.mark.parametrize(
    "visible, names",
    [
        ("1", ["NVIDIA A10"]),
        ("1,0", ["NVIDIA A10", "NVIDIA H100 80GB HBM3"]),
        ("", []),
        ("-1", []),
        ("GPU-bb", ["NVIDIA A10"]),
        ("0,7,1", ["NVIDIA H100 80GB HBM3"]),
    ],
)
def test_cuda_visible_devices_is_honoured(fake_nvml, visible, names):
    fake_nvml.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [g.name for g in devices.cuda_gpus()] == names
    if names:
        assert devices.cuda_gpus()[0].index == 0  # renumbered, as CUDA does


def test_broken_driver_means_no_gpu(monkeypatch):
    import pynvml

    def broken():
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    monkeypatch.setattr(pynvml, "nvmlInit", broken)
    devices.cuda_gpus.cache_clear()
    try:
        assert devices.cuda_gpus() == ()
        assert "no CUDA GPU found" in devices.describe_missing_gpu(Device("cuda", 0))
    finally:
        devices.cuda_gpus.cache_clear()


def test_this_machine_without_a_driver_has_no_gpu():
    devices.cuda_gpus.cache_clear()
    gpus = devices.cuda_gpus()
    assert isinstance(gpus, tuple)  # on a GPU machine this lists them; here it is () and nothing raised


def _slices(board: str, *memories_gb: int) -> list[FakeSlice]:
    return [
        FakeSlice(f"NVIDIA H100 80GB HBM3 MIG {i + 1}g.{gb}gb", gb * 10**9, f"MIG-{board}{i}", (i + 1, 0))
        for i, gb in enumerate(memories_gb)
    ]


def test_a_mig_slice_named_in_cuda_visible_devices_is_found_with_its_own_memory(nvml, monkeypatch):
    from sdk import memory

    mig = FakeBoard("NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30, "GPU-cccc", "00000000:1A:00.0", _slices("c", 10, 2))
    nvml(mig)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-c1")
    (only,) = devices.cuda_gpus()
    assert (only.index, only.uuid, only.memory_bytes) == (0, "MIG-c1", 2 * 10**9)
    assert only.compute_capability == (9, 0) and only.pci_bus_id == "0000:1a:00.0"  # its board's
    assert memory.device_memory("cuda:0") == 2 * 10**9  # not the board's 80 GiB
    monkeypatch.setattr(memory, "available", lambda: 2**40)
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.budget(device="cuda:0") == int(2 * 10**9 * memory.SHARE) < memory.CAP


def test_the_r450_mig_spelling_names_a_slice_by_board_and_instances(nvml, monkeypatch):
    nvml(FakeBoard("NVIDIA A100", (8, 0), 40 * 2**30, "GPU-dddd", "00000000:1A:00.0", _slices("d", 5, 10)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-GPU-dddd/2/0")
    assert [g.uuid for g in devices.cuda_gpus()] == ["MIG-d1"]


def test_cuda_sees_one_mig_slice_beside_whole_boards(nvml):
    mig = FakeBoard("NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30, "GPU-cccc", "00000000:5E:00.0", _slices("c", 10, 20))
    nvml(H100, mig)
    assert [g.uuid for g in devices.cuda_gpus()] == ["GPU-aaaa", "MIG-c0"]


def test_a_mig_board_without_slices_and_a_refused_slice_run_nothing(nvml, monkeypatch):
    empty = FakeBoard("NVIDIA A100", (8, 0), 40 * 2**30, "GPU-eeee", "00000000:1A:00.0", [])
    refused = FakeBoard("NVIDIA A100", (8, 0), 40 * 2**30, "GPU-ffff", "00000000:2A:00.0", _slices("f", 5, 10))
    refused.slice_refused = {0}
    nvml(empty, refused)
    assert [g.uuid for g in devices.cuda_gpus()] == ["MIG-f1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the empty board resolves to nothing: CUDA stops
    devices.cuda_gpus.cache_clear()
    assert devices.cuda_gpus() == ()


def test_one_gpu_nvml_refuses_does_not_hide_the_others(nvml):
    hidden = copy.deepcopy(A10)
    hidden.refused = True
    third = FakeBoard("NVIDIA L4", (8, 9), 24 * 2**30, "GPU-cccc", "00000000:5E:00.0")
    nvml(H100, hidden, third)
    gpus = devices.cuda_gpus()
    assert [(g.index, g.name) for g in gpus] == [(0, "NVIDIA H100 80GB HBM3"), (1, "NVIDIA L4")]


def test_identical_boards_are_numbered_by_pci_bus_not_by_nvml_index(nvml):
    first = FakeBoard("NVIDIA H200", (9, 0), 141 * 10**9, "GPU-1111", "00000000:9A:00.0")
    second = FakeBoard("NVIDIA H200", (9, 0), 141 * 10**9, "GPU-2222", "00000000:1B:00.0")
    nvml(first, second)  # NVML lists the 9a board first
    assert [(g.uuid, g.pci_bus_id) for g in devices.cuda_gpus()] == [
        ("GPU-2222", "0000:1b:00.0"),
        ("GPU-1111", "0000:9a:00.0"),
    ]


def test_mixed_boards_take_cudas_own_order_from_the_driver(nvml, monkeypatch):
    from sdk import cuda_driver

    nvml(H100, A10)
    asked = []
    monkeypatch.setattr(cuda_driver, "device_uuids", lambda: asked.append(1) or ["bbbb", "aaaa"])
    assert [g.name for g in devices.cuda_gpus()] == ["NVIDIA A10", "NVIDIA H100 80GB HBM3"]
    assert asked
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    devices.cuda_gpus.cache_clear()
    asked.clear()
    assert [g.name for g in devices.cuda_gpus()] == ["NVIDIA H100 80GB HBM3", "NVIDIA A10"]
    assert not asked  # the PCI order needs no driver


def test_uuid_and_bus_id_spellings():
    from sdk.cuda_driver import format_uuid
    from sdk.nvml import normal_bus_id

    assert format_uuid(bytes(range(16))) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert normal_bus_id("00000000:3B:00.0") == "0000:3b:00.0" == normal_bus_id("0000:3b:00.0")


def test_the_gpu_budget_takes_what_other_processes_hold_off(nvml, monkeypatch):
    shared = FakeBoard("NVIDIA H200", (9, 0), 141 * 2**30, "GPU-eeee", "00000000:1A:00.0", used=140 * 2**30)
    fake = nvml(shared)
    monkeypatch.setattr(memory, "available", lambda: 2**40)
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.device_available("cuda:0") == 2**30
    assert memory.budget(device="cuda:0") == int(2**30 * memory.SHARE)  # a quarter of the 1 GiB free
    fake.boards[0].used = 0
    assert memory.budget(device="cuda:0") == int(2**30 * memory.SHARE)  # the reading is kept 0.5 s
    memory._device_readings.clear()
    assert memory.budget(device="cuda:0") == memory.CAP  # a free H200: the cap decides
    assert memory.device_available("cpu") is None


def test_the_gpu_budget_falls_back_to_the_total_when_nvml_cannot_say_what_is_free(nvml, monkeypatch):
    import pynvml

    nvml(FakeBoard("NVIDIA H100 80GB HBM3", (9, 0), 2 * 2**30, "GPU-ffff", "00000000:1A:00.0"))

    def refused(uuid):
        raise pynvml.NVMLError(4)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", refused)
    assert memory.device_available("cuda:0") == 2 * 2**30
