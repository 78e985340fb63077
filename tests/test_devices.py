"""Device parsing and GPU discovery: a missing or broken driver is "no GPU", never an exception."""

import pytest

from sdk import devices
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


@pytest.fixture
def fake_nvml(monkeypatch):
    """NVML answering for two physical GPUs; the cache is cleared around the test."""
    import pynvml

    boards = [("NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30, "GPU-aaaa"), ("NVIDIA A10", (8, 6), 24 * 2**30, "GPU-bbbb")]
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: len(boards))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: i)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: boards[h][0])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCudaComputeCapability", lambda h: boards[h][1])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: type("Mem", (), {"total": boards[h][2]}))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUUID", lambda h: boards[h][3].encode())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices.cuda_gpus.cache_clear()
    yield monkeypatch
    devices.cuda_gpus.cache_clear()


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
