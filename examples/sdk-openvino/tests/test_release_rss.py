"""examples/sdk-openvino/release_rss.py, run small: it measures every step it names (a script no test
runs rots)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "release_rss.py"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from Linux's /proc")
def test_the_release_measurement_runs_every_step():
    spec = importlib.util.spec_from_file_location("release_rss", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    first, second = script.main(["--side", "96", "--rounds", "1"])
    assert set(first) == {"idle", "peak", "after", "trim", "clear+trim", "close+trim", "cleared"}
    assert set(second) == {"idle", "peak", "after", "clear+trim", "close+trim", "cleared"}
    assert first["cleared"] >= 1 and second["cleared"] >= 1  # it found the idle infer requests it drops
    assert all(value > 0 for value in first.values())
