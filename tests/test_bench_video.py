"""benchmarks/video.py in its smoke mode: every arm runs at 64x36 and the report says what it should."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("av", reason="video needs PyAV: pip install 'deploy-sdk[video]' (make install-dev installs it)")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_video_benchmark_runs_in_smoke_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("video_bench", ROOT / "benchmarks" / "video.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "video.json"
    args = ["--smoke", "--cases", "srcnn3", "--json", str(out), "--md", str(tmp_path / "v.md")]
    assert bench.main([*args, "--png", str(tmp_path / "v.png")]) == 0
    report = json.loads(out.read_text())
    case = report["cases"]["srcnn3 x2 from 64x36"]
    summary = case["summary"]
    assert summary["pipeline_fps"] > 0 and summary["bound_fps"] > 0
    assert summary["pipeline_over_bound"] == pytest.approx(summary["pipeline_fps"] / summary["bound_fps"], rel=0.01)
    assert set(case["stages"]) == {"decode", "engine", "encode"}
    if report["ffmpeg"]:
        assert summary["pipe_loop_fps"] > 0
    assert set(report["rss"]["bytes"]) == {"2", "4"} and report["rss"]["ratio"] > 0
    assert "pipeline / bound" in (tmp_path / "v.md").read_text() and (tmp_path / "v.png").stat().st_size > 0
