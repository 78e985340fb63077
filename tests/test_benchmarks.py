"""Every script under benchmarks/ runs in the suite, in its tiny ``--smoke`` mode, so that none can rot
unseen (benchmarks/scale_out.py once imported a function removed long before, and failed before it
measured anything). The scripts that another test already runs are named with that test; a new script
that is in neither table fails here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

# Scripts run by a test of their own area, which drives the smoke mode and checks what it reports.
ELSEWHERE = {
    "compare.py": "tests/test_bench_archs.py",  # --arch compact at 16x16; tests/test_bench.py runs `sdk bench`
    "levers_archs.py": "tests/test_bench_archs.py",
    "quality.py": "tests/test_zoo_quality.py",
    "video.py": "tests/test_bench_video.py",
    "serve_hostile.py": "tests/test_serve_bench_hostile.py",
    "budget.py": "tests/test_memory_budget.py",  # its child is the measurement of the budget tests
    "gpu/check.py": "tests/test_gpu_check.py",  # and check.sh's no-GPU mode validates its steps
    "gpu/check.sh": "tests/test_gpu_check.py",
    "gpu/carry-wheel.sh": "tests/test_gpu_check.py",
}


def _photos(out: Path, stdout: str) -> bool:
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["big"]["output_size"] == [288, 192]  # 96x64 at x3
    assert report["fits"]["max_abs_diff"] <= 1
    return "tiled" in out.with_suffix(".md").read_text()


def _scale_out(out: Path, stdout: str) -> bool:
    report = json.loads(out.read_text())
    assert [run["config"] for run in report["runs"]] == ["local sdk upscale", "Ray, 1 actor", "Ray, 2 actors"]
    return report["estimate"]["cpu"]["nodes"] >= 1 and report["estimate"]["gpu"]["nodes"] >= 1


def _serve(out: Path, stdout: str) -> bool:
    report = json.loads(out.read_text())
    assert [r["case"] for r in report["results"]] == ["srcnn3 32x32 x3", "espcn 32x32 x3"]
    rows = [row for result in report["results"] for row in result["by_concurrency"].values()]
    return len(rows) == 6 and all(row["server"]["throughput"] > 0 for row in rows)


# script: (arguments after --smoke, where its report goes ("{out}"), what the report must say, what it needs)
HERE = {
    "levers.py": (
        ["--md", "{out}"],
        "levers.md",
        lambda out, stdout: "| ort: as the SDK sets it up (optimised graph) |" in out.read_text(),
        (),
    ),
    "levers_auto.py": (
        ["--md", "{out}"],
        "levers_auto.md",
        lambda out, stdout: "auto took **" in out.read_text() and "(auto) |" in out.read_text(),
        ("torch",),
    ),
    "levers_tiles.py": (
        ["--md", "{out}"],
        "levers_tiles.md",
        lambda out, stdout: "| ort-cpu | 1 | 1 |" in out.read_text(),
        ("torch",),
    ),
    "overhead.py": (
        [],
        None,
        lambda out, stdout: (
            all(f"{m} x" in stdout for m in ("srcnn", "srcnn3", "espcn")) and "predict_batch(2)" in stdout
        ),
        (),
    ),
    "photos.py": (["--out", "{out}"], "photos", _photos, ()),
    "precision_archs.py": (
        ["--md", "{out}"],
        "precision_archs.md",
        lambda out, stdout: "| ort int8 |" in out.read_text() and "scaled to the picture range" in out.read_text(),
        ("torch", "onnxruntime.quantization", "skimage", "sklearn"),
    ),
    "profile_archs.py": (
        ["--md", "{out}"],
        "profile_archs.md",
        lambda out, stdout: "convolutions by shape" in out.read_text() and "| Conv |" in out.read_text(),
        ("torch",),
    ),
    "scale_out.py": (["--json", "{out}"], "scale_out.json", _scale_out, ("ray",)),
    "serve.py": (["--json", "{out}"], "serve.json", _serve, ("uvicorn", "httpx")),
    # Nothing to shrink: one architecture is its tiny run (run as the module it is, from the checkout).
    "devkit/export.py": (
        ["compact", "--out-dir", "{out}"],
        "archs",
        lambda out, stdout: Path(stdout.strip()).parent == out and Path(stdout.strip()).stat().st_size > 0,
        ("torch",),
    ),
}
MARKS = {"scale_out.py": [pytest.mark.ray], "serve.py": [pytest.mark.serve]}


def _scripts() -> list[str]:
    found = [p for p in BENCHMARKS.rglob("*.py") if 'if __name__ == "__main__"' in p.read_text()]
    found += BENCHMARKS.rglob("*.sh")
    return sorted(str(p.relative_to(BENCHMARKS)) for p in found)


def test_every_benchmark_script_is_run_by_the_suite():
    scripts = _scripts()
    assert "scale_out.py" in scripts and "devkit/export.py" in scripts  # the discovery itself works
    missing = [s for s in scripts if s not in HERE and s not in ELSEWHERE]
    assert not missing, f"give these a --smoke mode and a row in HERE (tests/test_benchmarks.py): {missing}"
    for script, test in ELSEWHERE.items():
        assert script in scripts, f"{script} is gone or no longer a script: drop its row"
        assert Path(script).name in (ROOT / test).read_text(), f"{test} no longer runs {script}"


@pytest.mark.slow
@pytest.mark.parametrize("script", [pytest.param(s, marks=MARKS.get(s, [])) for s in HERE])
def test_the_script_runs_in_its_smoke_mode(script, tmp_path):
    args, out_name, check, needs = HERE[script]
    for module in needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script} needs {module}: make install-dev installs it")
    out = tmp_path / out_name if out_name else None
    args = [a.format(out=out) for a in args]
    if script.startswith("devkit/"):
        command = [sys.executable, "-m", "benchmarks." + script.removesuffix(".py").replace("/", "."), *args]
        cwd = ROOT
    else:
        command = [sys.executable, str(BENCHMARKS / script), "--smoke", *args]
        cwd = tmp_path  # a script must not depend on being started from the checkout
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert check(out, done.stdout), done.stdout[-3000:]
