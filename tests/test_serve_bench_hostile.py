"""benchmarks/serve_hostile.py in its smoke mode: a small attack and a small large request against a
real server; every normal request answered 200 and the report written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_hostile.py"


@pytest.mark.slow
def test_smoke_run_answers_every_normal_request_and_writes_its_report(tmp_path):
    spec = importlib.util.spec_from_file_location("serve_hostile", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    assert bench.main(["--smoke", "--json", str(out_json), "--md", str(out_md)]) == 0
    result = json.loads(out_json.read_text())
    slow, memory = result["slow_clients"], result["memory"]
    assert slow["statuses_alone"] == [200] and slow["statuses_attacked"] == [200]
    assert slow["alone_ms"] > 0 and slow["attacked_ms"] > 0 and slow["floor_ms"] > 0
    assert memory["status"] == 200 and memory["idle_mib"] > 0 and memory["after_mib"] > 0
    assert result["timeout"]["next_status"] == 200 and result["timeout"]["cpu_s"] >= 0
    assert result["load_before"] and result["load_after"]
    text = out_md.read_text()
    assert "Load average" in text and "## Slow clients" in text and "## Memory" in text and "--timeout" in text
