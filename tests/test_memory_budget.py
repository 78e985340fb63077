"""A call's memory stays within the memory budget: the peak RSS growth of one call, read by the kernel in
the process that makes it (a fresh one per case), for images whose untiled run would need several
times the budget. The Predictor's cases run through benchmarks/budget.py (its child is the measurement);
the server's is a real ``sdk serve`` whose high-water mark is reset just before the request."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from sdk import memory

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 64 * 2**20
MARGIN = 1.1  # growth may exceed the budget by this factor: the allocator's rounding, page granularity


def _bench():
    spec = importlib.util.spec_from_file_location("budget_bench", ROOT / "benchmarks" / "budget.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


# espcn's result (27 MiB) is a large part of its budget: the windows must leave room for it.
@pytest.mark.parametrize(
    "model, scale, side, mib",
    [("srcnn3", 2, 512, 64), ("srcnn", 3, 512, 64), ("espcn", 3, 1024, 48)],
)
def test_one_call_stays_within_a_small_budget(model, scale, side, mib):
    budget = mib * 2**20
    row = _bench().run_case(model, None, scale, (side, side), f"{mib}MiB")
    assert row["budget"] == budget
    # The case is about tiling by the budget: in one piece this image would need several times it.
    assert row["untiled"] > 2 * budget and row["tiled"]
    assert row["growth"] <= MARGIN * budget, (
        f"{model} x{scale} {side}x{side}: grew {row['growth'] / 2**20:.0f} MiB within a {mib} MiB budget "
        f"(planned {row['planned'] / 2**20:.0f} MiB, windows {row['window']}, batch {row['batch']})"
    )


def test_the_smoke_run_writes_its_report(tmp_path):
    out = tmp_path / "budget.md"
    assert _bench().main(["--smoke", "--md", str(out), "--json", str(tmp_path / "budget.json")]) == 0
    assert "| srcnn3 | x2 | 96x96 | 8 |" in out.read_text()


# The padded case sends the picture in a 16 MiB body: the server counts it (and the decoder's copy of
# it) in the budget (sdk.serve.coding.held_bytes), so its windows shrink to what is left. The budget
# comes from $SDK_MEMORY_BUDGET in one case and from `sdk serve --memory-budget` in the other.
@pytest.mark.serve
@pytest.mark.parametrize("padding_mib, flag", [(0, False), (16, True)])
def test_one_request_to_the_server_stays_within_a_small_budget(monkeypatch, tmp_path, padding_mib, flag):
    pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
    pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")
    from serving import Server, encode, padded, picture

    if flag:
        monkeypatch.delenv(memory.ENV, raising=False)
    else:
        monkeypatch.setenv(memory.ENV, "64MiB")
    large = encode(picture(512, 512, seed=3))
    if padding_mib:
        large = padded(large, padding_mib * 2**20)
    with Server("srcnn3", *(["--memory-budget", "64MiB"] if flag else []), log_dir=tmp_path) as server:
        small = encode(picture(32, 32))
        assert server.client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=small).status_code == 200
        time.sleep(0.5)
        status = Path(f"/proc/{server.proc.pid}/status")
        before = _field(status, "VmRSS")
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")  # the high-water mark starts here
        response = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=large, timeout=120)
        assert response.status_code == 200
        growth = _field(status, "VmHWM") - before
    assert growth <= MARGIN * BUDGET, f"the server grew {growth / 2**20:.0f} MiB within a 64 MiB budget"


def _field(status: Path, key: str) -> int:
    return next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if line.startswith(key + ":"))


if not os.path.exists("/proc/self/clear_refs"):  # Linux only: the kernel's high-water mark, reset on demand
    pytestmark = pytest.mark.skip(reason="needs Linux's /proc/PID/clear_refs to reset the peak RSS")
