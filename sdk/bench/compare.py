"""The benchmark run: choose the rows, feed them the same photos, measure, judge, report."""

from __future__ import annotations

import importlib.util
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SDKError
from .metrics import Tolerance, compare_images, latency_summary, stage_means
from .runners import RAW_ENGINES, Job
from .schedule import Measurement, Plan, measure

REFERENCE = "torch"


@dataclass(frozen=True)
class Row:
    """A row to measure; ``reason`` non-empty means it cannot run here (known before starting it)."""

    kind: str
    backend: str
    device: str
    reason: str = ""


def plan_rows(selection: list[str], device: str) -> list[Row]:
    """The rows for ``--backends``: SDK backends by priority, their raw baselines, then torch."""
    from ..devices import describe_missing_gpu, parse_device
    from ..selection import list_backends

    parsed = parse_device(device)
    records = list_backends(parsed)
    names = [r.name for r in records]
    raw_names = [f"raw-{engine}" for engine in RAW_ENGINES]
    tokens = [t.strip().lower() for item in selection for t in item.split(",") if t.strip()]
    known = {"all", "raw", REFERENCE, *names, *raw_names}
    unknown = [t for t in tokens if t not in known]
    if unknown:
        raise SDKError(f"unknown --backends {unknown}; choose from all, raw, {REFERENCE}, "
                       f"{', '.join(names)}, {', '.join(raw_names)}")
    everything = "all" in tokens or not tokens
    chosen = [r for r in records if everything or r.name in tokens]
    raw = [e for e in RAW_ENGINES
           if everything or "raw" in tokens or f"raw-{e}" in tokens or e in [r.name for r in chosen]]
    rows = [Row("sdk", r.name, device if parsed else "/".join(r.devices) or "?", "" if r.available else r.reason)
            for r in chosen]
    for engine in raw:
        kind = "cpu" if RAW_ENGINES[engine] == "CPUExecutionProvider" else "cuda"
        target = parsed or parse_device(kind)
        reason = ""
        if importlib.util.find_spec("onnxruntime") is None:
            reason = "onnxruntime is not installed: pip install onnxruntime"
        elif target.kind != kind:
            reason = f"the raw {engine} baseline runs on {kind}, not {target}"
        elif kind == "cuda":
            from ..devices import gpu

            reason = "" if gpu(target) else describe_missing_gpu(target)
        rows.append(Row("raw", engine, str(target), reason))
    torch_missing = importlib.util.find_spec("torch") is None
    rows.append(Row("reference", REFERENCE, device,
                    "torch is not installed (pip install torch==2.13.0): no reference, no accuracy check" if torch_missing else ""))
    return rows


def _default_scale(model, declared: dict | None = None) -> int:
    from ..spec import resolve

    spec = resolve(model, declared).spec
    return spec.scale if spec.scale is not None else 3


def run_from_args(args) -> int:
    from ..declare import pipeline_from_args
    from ..model import Model
    from .inputs import benchmark_images
    from .machine import describe_machine
    from .report import Reporter, write_json, write_markdown, write_plot

    model = Model(args.model)
    declared = pipeline_from_args(args)
    scale = args.scale or _default_scale(model, declared)
    tolerance = Tolerance(args.max_abs_diff, args.min_psnr)
    stage_runs = args.runs if args.stage_runs is None else args.stage_runs
    plan = Plan(args.warmup, args.runs, stage_runs, args.timeout, args.schedule == "interleaved")
    rows = plan_rows(args.backends, args.device)
    machine = describe_machine(args.note)
    config = {
        "model": model.name, "model_file": model.path.name, "model_sha256": model.sha256[:16],
        "pipeline": declared,
        "scale": scale, "sizes": list(args.size), "batches": list(args.batch),
        "backends": args.backends, "device": args.device, "warmup": args.warmup, "runs": args.runs,
        "stage_runs": stage_runs, "schedule": args.schedule,
        "tolerance": {"max_abs_diff": tolerance.max_abs_diff, "min_psnr_db": tolerance.min_psnr_db},
        "inputs": "scikit-image photos (astronaut, then coffee, chelsea, rocket for a batch), centre-cropped "
                  "and resized to size x size with PIL bicubic",
        "reference": "",
        "raw_baseline": "bare onnxruntime InferenceSession, ORT_ENABLE_ALL, intra-op threads = physical cores "
                        "on CPU (the ort-cpu settings); fed a tensor prepared before timing; latency = session.run",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    reporter = Reporter(quiet=args.quiet)
    reporter.header(machine, config, tolerance)
    results, crashed = [], []
    groups = [(size, batch) for size in args.size for batch in args.batch]
    with tempfile.TemporaryDirectory(prefix="sdk-bench-") as scratch, reporter.progress(
            len(groups) * len(rows) * plan.steps_per_row()) as tick:
        for size, batch in groups:
            images = tuple(benchmark_images(size, batch))
            measurements = []
            for index, row in enumerate(rows):
                # Raw rows run on their engine's device; the SDK and torch choose from --device.
                job = Job(row.kind, row.backend, args.model, row.device if row.kind == "raw" else args.device,
                          images, scale, str(Path(scratch) / f"{size}-{batch}-{index}.npy"), declared)
                m = Measurement(job, device=row.device)
                if row.reason:
                    m.fail(row.reason)
                measurements.append(m)
            measure(measurements, plan, lambda label, n, s=size, b=batch: tick(f"{s}px b{b} {label}", n))
            group = judge(measurements, size, batch, tolerance)
            reference = next((m for m in measurements if m.job.kind == "reference"), None)
            if reference is not None and not config["reference"]:
                config["reference"] = reference.source or reference.reason
            results.extend(group)
            crashed.extend((m, size) for m in measurements if m.crashed)
            reporter.table(group, config)
    document = {"machine": machine, "config": config, "results": results}
    if args.json_path:
        write_json(document, Path(args.json_path))
    if args.md_path:
        write_markdown(document, Path(args.md_path))
    if args.plot_path:
        write_plot(document, Path(args.plot_path))
    failed = [r for r in results if r["passed"] is False]
    for r in failed:
        reporter.note(f"FAIL: {r['kind']} {r['backend']} at {r['size']}px batch {r['batch']}: max abs diff "
                      f"{r['max_abs_diff']}, PSNR {r['psnr_db']} (needs {tolerance})", style="red")
    for m, size in crashed:
        reporter.note(f"CRASH: {m.job.kind} {m.job.backend} at {size}px: {m.reason}", style="red")
    return 1 if failed or crashed else 0


def judge(measurements: list[Measurement], size: int, batch: int, tolerance: Tolerance) -> list[dict]:
    """Result records (the JSON schema) for one size and batch, with accuracy against torch."""
    reference = next((m for m in measurements if m.job.kind == "reference" and m.available), None)
    expected = np.load(reference.job.output_path) if reference is not None else None
    results = []
    for m in measurements:
        record = {
            "backend": m.job.backend, "kind": m.job.kind, "size": size, "batch": batch, "device": m.device,
            "available": m.available, "reason": m.reason, "load_s": None, "first_ms": None,
            "latency_ms": None, "images_per_s": None, "stages_ms": None, "peak_rss_mb": None,
            "max_abs_diff": None, "psnr_db": None, "passed": None,
        }
        if m.available and m.times:
            latency = latency_summary(m.times)
            stages = stage_means(m.stages) if m.has_stages else {"pre": None, "infer": latency["mean"], "post": None}
            record.update(load_s=m.load_s, first_ms=m.first_ms, latency_ms=latency,
                          images_per_s=batch / (latency["mean"] / 1e3), stages_ms=stages,
                          peak_rss_mb=m.peak_rss_mb)
            if expected is not None:
                try:
                    diff, psnr = compare_images(expected, np.load(m.job.output_path))
                except ValueError as exc:
                    record.update(passed=False, reason=str(exc))
                else:
                    record.update(max_abs_diff=diff, psnr_db=psnr, passed=tolerance.passes(diff, psnr))
        elif m.available:
            record.update(available=False, reason="no timed calls completed")
        results.append(record)
    return results
