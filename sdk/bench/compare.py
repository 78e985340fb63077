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
from .runners import Job
from .schedule import Measurement, Plan, measure

REFERENCE = "torch"
PEER = "torch-compiled"
CHANNELS_LAST = "torch-channels-last"
TORCH_FP16 = "torch-fp16"  # torch eager under CUDA autocast to float16: the GPU user's quick speed-up
AUTO = "auto"
FLOOR = "floor"


@dataclass(frozen=True)
class Row:
    """A row to measure; ``reason`` non-empty means it cannot run here (known before starting it)."""

    kind: str
    backend: str
    device: str
    reason: str = ""
    options: tuple = ()  # Predictor options of an SDK row, e.g. (("optimize", False),)


def parse_variant(text: str) -> tuple[str, tuple]:
    """ "NAME:precision=int8,optimize=false" -> ("NAME", (("optimize", False), ("precision", "int8")))."""
    name, sep, rest = text.partition(":")
    pairs = [p for p in rest.split(",") if p.strip()]
    if not sep or not name.strip() or not pairs or any("=" not in p for p in pairs):
        raise SDKError(f"--variant {text!r}: write BACKEND:KEY=VALUE[,KEY=VALUE], e.g. NAME:precision=int8")
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        options[key.strip()] = _typed(value.strip())
    return name.strip().lower(), tuple(sorted(options.items()))


def _typed(value: str):
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def plan_rows(selection: list[str], device: str, unoptimized: bool = False, variants=()) -> list[Row]:
    """The rows for ``--backends``: SDK backends by priority, each with the raw baseline it offers
    (``Backend.raw_runner``), then torch eager, torch compiled and the fp32 floor."""
    from ..devices import parse_device
    from ..plugins import load_plugins
    from ..selection import list_backends

    parsed = parse_device(device)
    records = list_backends(parsed)
    registry = load_plugins()
    names = [r.name for r in records if not r.load_error]
    offering = [n for n in names if registry.get(n) and registry.get(n).backend.offers_raw_runner()]
    raw_names = [f"raw-{name}" for name in offering]
    tokens = [t.strip().lower() for item in selection for t in item.split(",") if t.strip()]
    known = {"all", "raw", AUTO, REFERENCE, CHANNELS_LAST, PEER, TORCH_FP16, FLOOR, *names, *raw_names}
    unknown = [t for t in tokens if t not in known]
    if unknown:
        raise SDKError(
            f"unknown --backends {unknown}; choose from all, raw, {AUTO}, {REFERENCE}, {CHANNELS_LAST}, {PEER}, {TORCH_FP16}, "
            f"{FLOOR}, "
            f"{', '.join(names)}, {', '.join(raw_names)}"
        )
    everything = "all" in tokens or not tokens
    chosen = [r for r in records if not r.load_error and (everything or r.name in tokens)]
    rows = []
    if (everything or AUTO in tokens) and any(r.available for r in records if not r.load_error):
        # What a user who names no backend gets: auto's choice (measured on first load, see sdk.tuning).
        rows.append(Row("sdk", AUTO, device))
    for r in chosen:
        where = device if parsed else "/".join(r.devices) or "?"
        rows.append(Row("sdk", r.name, where, "" if r.available else r.reason))
        if unoptimized:
            rows.append(Row("sdk", r.name, where, "" if r.available else r.reason, (("optimize", False),)))
        for name, options in variants:
            if name == r.name:
                rows.append(Row("sdk", r.name, where, "" if r.available else r.reason, options))
    missing = sorted({name for name, _ in variants} - {r.name for r in chosen})
    if missing:
        raise SDKError(f"--variant names backend(s) {missing} that are not among the rows; choose from {names}")
    for r in records:
        if r.name in offering and (everything or "raw" in tokens or f"raw-{r.name}" in tokens or r in chosen):
            rows.append(Row("raw", r.name, device if parsed else "/".join(r.devices), "" if r.available else r.reason))
    torch_missing = importlib.util.find_spec("torch") is None
    why = "torch is not installed (pip install torch==2.13.0): no reference, no accuracy check" if torch_missing else ""
    rows.append(Row("reference", REFERENCE, device, why))
    if everything or CHANNELS_LAST in tokens:
        rows.append(Row("channels_last", REFERENCE, device, why))
    if everything or PEER in tokens:
        rows.append(Row("peer", REFERENCE, device, why))
    if TORCH_FP16 in tokens:  # named only: "all" runs on CPU machines too, where autocast to fp16 is no lever
        # Reduced precision is shown, not judged (reduced_precision reads this option).
        rows.append(Row("autocast", REFERENCE, device, why, (("precision", "fp16"),)))
    if everything or FLOOR in tokens:
        rows.append(Row("floor", "sgemm", "cpu"))
    return rows


def _default_scale(model, declared: dict | None = None) -> int:
    from ..resolution import resolve

    spec = resolve(model, declared).spec
    return spec.scale if spec.scale is not None else 3


def run_from_args(args) -> int:
    from ..declare import pipeline_from_args
    from ..model import Model
    from .documents import write_json, write_markdown, write_plot
    from .inputs import benchmark_images
    from .machine import describe_machine
    from .report import Reporter

    model = Model(args.model)
    declared = pipeline_from_args(args)
    scale = args.scale or _default_scale(model, declared)
    tolerance = Tolerance(args.max_abs_diff, args.min_psnr)
    stage_runs = args.runs if args.stage_runs is None else args.stage_runs
    plan = Plan(args.warmup, args.runs, stage_runs, args.timeout, args.schedule == "interleaved")
    variants = [parse_variant(v) for v in getattr(args, "variant", [])]
    rows = plan_rows(args.backends, args.device, getattr(args, "unoptimized", False), variants)
    machine = describe_machine(args.note)
    config = {
        "model": model.name,
        "model_file": model.path.name,
        "model_sha256": model.sha256[:16],
        "pipeline": declared,
        "torch_module": args.torch_module,
        "scale": scale,
        "sizes": list(args.size),
        "batches": list(args.batch),
        "backends": args.backends,
        "device": args.device,
        "warmup": args.warmup,
        "runs": args.runs,
        "stage_runs": stage_runs,
        "schedule": args.schedule,
        "tolerance": {"max_abs_diff": tolerance.max_abs_diff, "min_psnr_db": tolerance.min_psnr_db},
        "inputs": "scikit-image photos (astronaut, then coffee, chelsea, rocket for a batch), centre-cropped "
        "and resized to size x size with PIL bicubic",
        "reference": "",
        "raw_baseline": "each backend's own bare engine (Backend.raw_runner) on the model file its Session gets, "
        "set up with the same settings, fed a tensor prepared before timing; latency = the engine call",
        "channels_last": "the same PyTorch module and input in channels_last memory format, eager",
        "peer": "the same PyTorch module in channels_last memory format under torch.compile (inductor), compiled "
        "before the warm-up (compile_s), so no timed call includes compiling",
        "floor": "model FLOPs (convolutions and matrix products, counted from the graph at each size) at the "
        "float32 sgemm rate of numpy's BLAS: its fastest call, timed as a row of the same interleaved run; a row's "
        "fraction of the floor is taken on its own fastest call",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    reporter = Reporter(quiet=args.quiet)
    reporter.header(machine, config, tolerance)
    results, crashed = [], []
    groups = [(size, batch) for size in args.size for batch in args.batch]
    with (
        tempfile.TemporaryDirectory(prefix="sdk-bench-") as scratch,
        reporter.progress(len(groups) * len(rows) * plan.steps_per_row()) as tick,
    ):
        from .flops import model_flops

        for size, batch in groups:
            images = tuple(benchmark_images(size, batch))
            flops = model_flops(model, size, batch, scale, declared)
            measurements = []
            for index, row in enumerate(rows):
                # Raw rows run on their engine's device; the SDK and torch choose from --device.
                job = Job(
                    row.kind,
                    row.backend,
                    args.model,
                    row.device if row.kind == "raw" else args.device,
                    images,
                    scale,
                    str(Path(scratch) / f"{size}-{batch}-{index}.npy"),
                    row.options,
                    flops,
                    pipeline=declared,
                    torch_module=args.torch_module or "",
                )
                m = Measurement(job, device=row.device)
                if row.reason:
                    m.fail(row.reason)
                measurements.append(m)
            measure(measurements, plan, lambda label, n, s=size, b=batch: tick(f"{s}px b{b} {label}", n))
            group = judge(measurements, size, batch, tolerance, flops)
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
        reporter.note(
            f"FAIL: {r['kind']} {r['backend']} at {r['size']}px batch {r['batch']}: max abs diff "
            f"{r['max_abs_diff']}, PSNR {r['psnr_db']} (needs {tolerance})",
            style="red",
        )
    for m, size in crashed:
        reporter.note(f"CRASH: {m.job.kind} {m.job.backend} at {size}px: {m.reason}", style="red")
    return 1 if failed or crashed else 0


FULL_PRECISION = (None, "fp32", "f32")


def reduced_precision(record: dict) -> bool:
    return (record.get("options") or {}).get("precision") not in FULL_PRECISION


def judge(
    measurements: list[Measurement], size: int, batch: int, tolerance: Tolerance, flops: float = 0.0
) -> list[dict]:
    """Result records (the JSON schema) for one size and batch, with accuracy against torch."""
    reference = next((m for m in measurements if m.job.kind == "reference" and m.available), None)
    expected = np.load(reference.job.output_path) if reference is not None else None
    results = []
    for m in measurements:
        record = {
            "backend": m.job.backend,
            "kind": m.job.kind,
            "options": dict(m.job.options),
            "size": size,
            "batch": batch,
            "device": m.device,
            "available": m.available,
            "reason": m.reason,
            "load_s": None,
            "compile_s": m.compile_s,
            "first_ms": None,
            "gflop": flops / 1e9 if flops else None,
            "floor_ms": None,
            "sgemm_gflops": None,
            "latency_ms": None,
            "images_per_s": None,
            "stages_ms": None,
            "peak_rss_mb": None,
            "max_abs_diff": None,
            "psnr_db": None,
            "passed": None,
        }
        if m.available and m.times:
            floor = m.job.kind == "floor" and m.sgemm_flops
            # The floor row's calls are sgemm products of whatever size ran fastest (sdk.bench.floor):
            # each is read as the time the model's FLOPs take at that call's rate, so the row's columns
            # and ratios are the floor's, not those of a product that may be 30x smaller.
            per_call = flops / m.sgemm_flops if floor else 1.0
            latency = latency_summary([t * per_call for t in m.times])
            stages = stage_means(m.stages) if m.has_stages else {"pre": None, "infer": latency["mean"], "post": None}
            record.update(
                load_s=m.load_s,
                first_ms=m.first_ms,
                latency_ms=latency,
                images_per_s=batch / (latency["mean"] / 1e3),
                stages_ms=stages,
                peak_rss_mb=m.peak_rss_mb,
            )
            if floor:
                # The rate of the fastest sgemm call (sdk.bench.floor says why), at the model's FLOPs.
                record["floor_ms"] = latency["min"]
                record["sgemm_gflops"] = flops / 1e9 / (latency["min"] / 1e3)
            elif expected is not None:
                try:
                    diff, psnr = compare_images(expected, np.load(m.job.output_path))
                except ValueError as exc:
                    record.update(passed=False, reason=str(exc))
                else:
                    # Reduced precision is an opt-in trade: its error is shown, not judged.
                    judged = None if reduced_precision(record) else tolerance.passes(diff, psnr)
                    record.update(max_abs_diff=diff, psnr_db=psnr, passed=judged)
        elif m.available:
            record.update(available=False, reason="no timed calls completed")
        results.append(record)
    return results
