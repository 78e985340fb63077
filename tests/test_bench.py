"""The benchmark (`sdk bench`, benchmarks/compare.py): a real run at a tiny size, plus its parts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.bench.metrics import Tolerance, compare_images, latency_summary
from sdk.errors import SDKError

ROOT = Path(__file__).resolve().parent.parent
RESULT_KEYS = {
    "backend",
    "kind",
    "available",
    "reason",
    "load_s",
    "first_ms",
    "latency_ms",
    "images_per_s",
    "stages_ms",
    "peak_rss_mb",
    "max_abs_diff",
    "psnr_db",
    "passed",
    "size",
    "batch",
    "device",
    "options",
    "compile_s",
    "gflop",
    "floor_ms",
    "sgemm_gflops",
}
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _row(results, kind, backend):
    return next(r for r in results if r["kind"] == kind and r["backend"] == backend)


@pytest.mark.slow
def test_smoke_run_writes_the_documented_json_and_outputs_pass(tmp_path):
    """CI's smoke test: the bundled srcnn3 at 24x24, one timed run, through the real CLI."""
    from sdk import list_backends
    from sdk.cli import main

    out = tmp_path / "bench.json"
    # Every row but torch.compile, whose compiling takes minutes on a small machine.
    everything_but_compile = [r.name for r in list_backends()] + ["raw", "floor"]
    code = main(
        [
            "bench",
            "--model",
            "srcnn3",
            "--size",
            "24",
            "--scale",
            "3",
            "--warmup",
            "0",
            "--runs",
            "1",
            "--backends",
            *everything_but_compile,
            "--json",
            str(out),
            "--md",
            str(tmp_path / "bench.md"),
            "--plot",
            str(tmp_path / "bench.png"),
            "--quiet",
        ]
    )
    document = json.loads(out.read_text())
    assert set(document) == {"machine", "config", "results"}
    assert {"cpu", "physical_cores", "gpus", "libraries"} <= set(document["machine"])
    assert document["config"]["tolerance"] == {"max_abs_diff": 2.0, "min_psnr_db": 45.0}
    results = document["results"]
    for record in results:
        assert set(record) == RESULT_KEYS
        assert record["kind"] in ("sdk", "raw", "reference", "floor")
        assert record["available"] or record["reason"], f"{record['backend']} is unavailable without a reason"
    # Every discovered backend is listed, available or not.
    assert {r.name for r in list_backends()} <= {r["backend"] for r in results if r["kind"] == "sdk"}
    # Every backend that offers a raw baseline through the plugin contract gets a raw row.
    assert {r["backend"] for r in results if r["kind"] == "raw"} >= {"ort-cpu", "ort-cuda"}
    floor = _row(results, "floor", "sgemm")
    assert floor["available"] and floor["gflop"] > 0 and floor["floor_ms"] > 0 and floor["sgemm_gflops"] > 0
    for kind, backend in (("sdk", "ort-cpu"), ("raw", "ort-cpu")):
        record = _row(results, kind, backend)
        assert record["available"], record["reason"]
        assert set(record["latency_ms"]) == {"mean", "p50", "p90", "p99", "min"}
        assert set(record["stages_ms"]) == {"pre", "infer", "post"}
        assert record["images_per_s"] > 0 and record["peak_rss_mb"] > 0 and record["load_s"] > 0
        assert record["size"] == 24 and record["batch"] == 1
    assert all(_row(results, "sdk", "ort-cpu")["stages_ms"][k] is not None for k in ("pre", "infer", "post"))
    reference = _row(results, "reference", "torch")
    if HAS_TORCH:
        assert reference["available"], reference["reason"]
        for kind in ("sdk", "raw"):
            record = _row(results, kind, "ort-cpu")
            assert record["passed"] is True, record
            assert record["max_abs_diff"] <= 2
        assert code == 0
    else:
        assert not reference["available"] and "torch" in reference["reason"]
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert "| ort-cpu |" in (tmp_path / "bench.md").read_text()


def test_compare_script_help_runs_from_a_checkout():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--backends" in result.stdout


def test_building_the_cli_parser_stays_light():
    code = (
        "import sys, sdk.cli; sdk.cli.build_parser(); "
        "print(','.join(m for m in ('torch', 'onnxruntime', 'matplotlib', 'rich') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_unknown_backend_names_are_refused_with_the_choices():
    from sdk.bench.compare import plan_rows

    with pytest.raises(SDKError, match="unknown --backends.*ort-cpu"):
        plan_rows(["ort-cpu,nonesuch"], "auto")


def test_a_named_backend_brings_its_raw_baseline_and_the_reference():
    from sdk.bench.compare import plan_rows

    rows = plan_rows(["ort-cpu"], "auto")
    assert [(r.kind, r.backend) for r in rows] == [("sdk", "ort-cpu"), ("raw", "ort-cpu"), ("reference", "torch")]


def test_all_adds_compiled_torch_the_floor_and_unoptimised_rows_on_request():
    from sdk.bench.compare import plan_rows

    rows = plan_rows(["all"], "cpu", unoptimized=True)
    kinds = [(r.kind, r.backend, r.options) for r in rows]
    assert ("peer", "torch", ()) in kinds and ("floor", "sgemm", ()) in kinds
    assert ("sdk", "ort-cpu", (("optimize", False),)) in kinds


def test_a_backend_without_a_raw_baseline_gets_no_raw_row(monkeypatch):
    from deploy_sdk_backends.onnxruntime import OrtCpuBackend
    from sdk.backend import Backend
    from sdk.bench.compare import plan_rows

    assert OrtCpuBackend.offers_raw_runner()
    monkeypatch.setattr(OrtCpuBackend, "raw_runner", Backend.raw_runner)
    assert not OrtCpuBackend.offers_raw_runner()
    assert ("raw", "ort-cpu") not in [(r.kind, r.backend) for r in plan_rows(["ort-cpu"], "cpu")]


def test_the_core_benchmark_names_no_engine():
    import re

    for path in (ROOT / "sdk" / "bench").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"onnxruntime|openvino|tensorrt|ort-cpu|ort-cuda", text, re.I), path.name


def test_flops_are_counted_from_the_graph():
    from sdk.bench.flops import model_flops
    from sdk.model import Model

    # conv 9x9 3->64, 1x1 64->32, 5x5 32->3 on 768x768: the 23.6 GFLOP of DESIGN.md.
    expected = 2 * 768 * 768 * (64 * 3 * 81 + 32 * 64 + 3 * 32 * 25)
    assert model_flops(Model("srcnn3"), 256, 1, 3) == expected
    assert model_flops(Model("srcnn"), 128, 2, 3) == 2 * expected / 4


def test_gpu_rows_say_why_they_cannot_run_on_a_cpu_only_machine():
    from sdk.bench.compare import plan_rows
    from sdk.devices import cuda_gpus

    if cuda_gpus():
        pytest.skip("this machine has a GPU")
    rows = {(r.kind, r.backend): r for r in plan_rows(["all"], "auto")}
    # The raw row cannot run for the reason the backend's own probe gives.
    assert rows[("sdk", "ort-cuda")].reason
    assert rows[("raw", "ort-cuda")].reason == rows[("sdk", "ort-cuda")].reason
    # Forcing every row onto the CPU leaves the CUDA baseline unavailable, with the reason.
    cpu_rows = {(r.kind, r.backend): r for r in plan_rows(["raw"], "cpu")}
    assert "runs on cuda" in cpu_rows[("raw", "ort-cuda")].reason


def _dies_at_once(conn, job):
    os._exit(3)


@pytest.mark.slow
def test_a_crashing_or_failing_worker_costs_only_its_own_row(tmp_path, photo):
    from sdk.bench.runners import Job
    from sdk.bench.schedule import Measurement, Plan, measure

    def job(kind, backend, model, name):
        return Job(kind, backend, model, "auto", (photo,), 3, str(tmp_path / f"{name}.npy"))

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    rows = [
        Measurement(job("sdk", "ort-cpu", str(broken), "broken")),
        Measurement(job("sdk", "ort-cpu", "srcnn3", "good")),
        Measurement(job("raw", "ort-cpu", "srcnn3", "dies")),
    ]
    measure(rows, Plan(warmup=0, runs=2, stage_runs=1, timeout=120), targets={id(rows[2]): _dies_at_once})
    assert not rows[0].available and rows[0].crashed and "ModelError" in rows[0].reason
    assert not rows[2].available and rows[2].crashed and "exit code 3" in rows[2].reason
    good = rows[1]
    assert good.available and len(good.times) == 2 and len(good.stages) == 1 and good.peak_rss_mb > 0
    assert np.load(good.job.output_path).shape == (1, photo.shape[0] * 3, photo.shape[1] * 3, 3)


def test_accuracy_metrics():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    assert compare_images(a, a) == (0, None)  # identical: infinite PSNR, stored as None
    b = a.copy()
    b[0, 0, 0, 0] = 3
    diff, psnr = compare_images(a, b)
    assert diff == 3 and psnr == pytest.approx(10 * np.log10(255**2 / (9 / 48)))
    tolerance = Tolerance(max_abs_diff=2, min_psnr_db=45)
    assert tolerance.passes(0, None) and tolerance.passes(2, 50.0)
    assert not tolerance.passes(3, 60.0) and not tolerance.passes(1, 40.0)
    with pytest.raises(ValueError, match="shapes differ"):
        compare_images(a, a[:, :2])


def test_latency_summary_is_in_milliseconds():
    stats = latency_summary([0.010, 0.020, 0.030])
    assert stats["mean"] == pytest.approx(20.0) and stats["min"] == pytest.approx(10.0)
    assert stats["p50"] == pytest.approx(20.0) and stats["p99"] <= 30.0


@pytest.mark.skipif(not HAS_TORCH, reason="the torch reference needs torch")
@pytest.mark.parametrize("fixture", ["runtime_model", "fixed_model", "y_model"])
def test_the_graph_reference_matches_onnx_runtime(fixture, request):
    """Graphs the zoo does not know run through torch operators, and agree with ORT."""
    import onnxruntime as ort
    import torch

    from sdk.model import Model
    from sdk.zoo.reference import reference_module

    model = Model(request.getfixturevalue(fixture))
    module, names, source = reference_module(model)
    assert "ONNX graph" in source
    rng = np.random.default_rng(0)
    channels = model.inputs[0].shape[1]
    feeds = {"input": (rng.random((2, channels, 9, 7), dtype=np.float32) * 255)}
    if "factor" in names:
        feeds["factor"] = np.array([1, 1, 2, 2], np.float32)
    expected = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.inference_mode():
        got = module(*[torch.from_numpy(feeds[n]) for n in names]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-2)


@pytest.mark.skipif(not HAS_TORCH, reason="the torch reference needs torch")
def test_a_bundled_model_is_rebuilt_from_the_zoo_with_the_files_weights():
    from sdk.model import Model
    from sdk.zoo.reference import reference_module

    _module, names, source = reference_module(Model("srcnn3"))
    assert source.startswith("sdk.zoo srcnn3") and names == ["input", "factor"]


def test_variants_add_sdk_rows_with_typed_options():
    from sdk.bench.compare import parse_variant, plan_rows

    assert parse_variant("ort-cpu:precision=int8,optimize=false") == (
        "ort-cpu",
        (("optimize", False), ("precision", "int8")),
    )
    assert parse_variant("openvino:threads=2") == ("openvino", (("threads", 2),))
    with pytest.raises(SDKError, match="BACKEND:KEY=VALUE"):
        parse_variant("ort-cpu")
    rows = plan_rows(["ort-cpu"], "cpu", variants=[parse_variant("ort-cpu:precision=int8")])
    assert [(r.kind, r.options) for r in rows][:2] == [("sdk", ()), ("sdk", (("precision", "int8"),))]
    with pytest.raises(SDKError, match="not among the rows"):
        plan_rows(["ort-cpu"], "cpu", variants=[parse_variant("nonesuch:a=1")])


def test_reduced_precision_rows_are_shown_not_judged():
    from sdk.bench.compare import reduced_precision
    from sdk.bench.rows import NO_RATIO, cells

    assert reduced_precision({"options": {"precision": "int8"}})
    assert not reduced_precision({"options": {"precision": "fp32"}}) and not reduced_precision({"options": {}})
    record = {
        "kind": "sdk",
        "backend": "x",
        "options": {"precision": "int8"},
        "latency_ms": None,
        "stages_ms": None,
        "passed": None,
        "max_abs_diff": 8,
        "psnr_db": 48.1,
        "device": "cpu",
        "load_s": None,
        "first_ms": None,
        "images_per_s": None,
        "peak_rss_mb": None,
    }
    assert cells(record, NO_RATIO)["accuracy"] == "not judged (reduced precision)"


def test_the_floor_is_the_fastest_sgemm_call_and_rows_are_held_to_it_on_their_fastest_call():
    """Only the machine's other work slows a call: the floor's rate comes from the sgemm row's fastest
    call, and a row's fraction of it from the row's own fastest call (sdk.bench.floor), not the means,
    which counted how many calls of each happened to be slowed."""
    from sdk.bench.compare import judge
    from sdk.bench.metrics import Tolerance
    from sdk.bench.rows import ratios
    from sdk.bench.runners import Job
    from sdk.bench.schedule import Measurement

    def measured(kind: str, backend: str, times: list[float]) -> Measurement:
        job = Job(kind, backend, "m.onnx", "cpu", (), 1, "")
        return Measurement(job, times=times, has_stages=False, sgemm_flops=2e9 if kind == "floor" else None)

    floor = measured("floor", "sgemm", [0.020, 0.010, 0.018])  # 2 GFLOP: 200 GFLOP/s at best
    engine = measured("raw", "ort-cpu", [0.050, 0.040, 0.090])
    records = judge([floor, engine], 64, 1, Tolerance(2, 45), flops=6e9)
    row = {r["kind"]: r for r in records}
    assert row["floor"]["sgemm_gflops"] == pytest.approx(200)
    assert row["floor"]["floor_ms"] == pytest.approx(30.0)  # 6 GFLOP at 200 GFLOP/s
    assert ratios(records)[id(row["raw"])]["floor"] == pytest.approx(30.0 / 40.0)
    # The row itself reads as the floor (the model's FLOPs at each call's rate), not as the 2 GFLOP
    # products the probe happened to pick: RRDB's once read 38 ms against a floor of 1,110 ms.
    assert row["floor"]["latency_ms"]["min"] == pytest.approx(30.0)
    assert row["floor"]["latency_ms"]["mean"] == pytest.approx((60.0 + 30.0 + 54.0) / 3)
    assert ratios(records)[id(row["floor"])]["best_torch"] is None  # no torch row in this group


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc/self/status (VmHWM)")
def test_a_runs_peak_memory_is_its_own_not_its_parents_at_the_fork():
    """getrusage folds the parent's memory at the fork into a child's ru_maxrss; a benchmark holding
    gigabytes read that for every run it started (video.py: 4,009 MiB for a 1,134 MiB job)."""
    import subprocess
    import sys

    held = np.ones(512 * 2**20, dtype=np.uint8)  # 512 MiB, touched
    code = "from sdk.bench.worker import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert held.sum() == held.size
    assert child < 256, f"the child read {child:.0f} MiB: its parent's 512 MiB counted"
