#!/usr/bin/env python
"""The GPU check: prove ort-cuda on a CUDA machine, then measure it beside the raw engine, PyTorch and
ort-cpu in one run, and print each goal's verdict (docs/gpu.md). benchmarks/gpu/check.sh prepares the
Python (a carried onnxruntime-gpu wheel, the SDK from this tree) and runs this.

    python benchmarks/gpu/check.py --out DIR [--deadline-s 300] [--plan-only]

Steps, in order of what matters most, each only while the deadline leaves room for it:
  1. ort-cuda really runs on CUDAExecutionProvider (a session that fell back to the CPU is refused),
     and equals ort-cpu within 1 grey level on every bundled model, before anything is timed;
  2. the GPU tests (pytest -m gpu), their report as JUnit XML;
  3. benchmarks/compare.py rows side by side: srcnn3 x3 at 512, 256 and 1024 (batch 1 and 8), espcn;
  4. benchmarks/video.py on ort-cuda.
Without a GPU it validates every step's arguments against the real scripts, says so, and ends.
Everything goes under --out (at most 8 files: the device tool brings back no more).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu.floor import datasheet_bandwidth, floor_table, row_name  # noqa: E402

# The files this check writes under --out: eight, the most the device tool brings back.
FILES = ("check.log", "summary.md", "env.json", "gpu-tests.xml", "compare.json", "compare.md", "video.json", "video.md")
GOAL_SIZE = 512
TORCH_FP16 = "torch-fp16"


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: int
    needs_s: int  # started only while at least this much of the deadline is left
    results: list[str] = field(default_factory=list)  # JSON files the step writes (merged afterwards)


class Log:
    """Everything printed goes to the console and to check.log."""

    def __init__(self, path: Path):
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.file.write(text + "\n")
        self.file.flush()


def compare_steps(scratch: Path) -> list[Step]:
    """compare.py's groups, the goal's size first. The torch.compile row runs where the goals need
    it (512, batch 1, and espcn): each compile costs tens of seconds of the six minutes."""
    gpu_rows = ["ort-cuda", "raw-ort-cuda", "ort-cpu", TORCH_FP16]
    # (model, size, batches, rows, timed runs, seconds): fewer runs at 1024, where an ort-cpu call at
    # batch 8 takes seconds even on 16 cores.
    plan = [
        ("srcnn3", GOAL_SIZE, [1], [*gpu_rows, "torch-compiled"], 10, 150),
        ("srcnn3", GOAL_SIZE, [8], gpu_rows, 10, 90),
        ("srcnn3", 256, [1, 8], gpu_rows, 10, 90),
        ("espcn", GOAL_SIZE, [1], [*gpu_rows, "torch-compiled"], 10, 120),
        ("srcnn3", 1024, [1, 8], gpu_rows, 3, 150),
    ]
    steps = []
    for model, size, batches, rows, runs, timeout in plan:
        name = f"compare {model} {size} b{'/'.join(map(str, batches))}"
        result = scratch / f"compare-{model}-{size}-{'-'.join(map(str, batches))}.json"
        argv = [
            sys.executable,
            str(ROOT / "benchmarks" / "compare.py"),
            "--model",
            model,
            "--size",
            str(size),
            "--batch",
            *map(str, batches),
            "--backends",
            *rows,
            "--device",
            "auto",  # each row on its own default: ort-cuda and torch on cuda:0, ort-cpu on the CPU
            "--warmup",
            "2" if runs > 3 else "1",
            "--runs",
            str(runs),
            "--stage-runs",
            str(min(runs, 3)),
            "--timeout",
            str(timeout),
            "--quiet",
            "--note",
            "GPU check (benchmarks/gpu/check.py)",
            "--json",
            str(result),
        ]
        if model == "srcnn3":
            argv += ["--scale", "3"]
        steps.append(Step(name, argv, timeout, needs_s=min(timeout, 60), results=[str(result)]))
    return steps


def plan_steps(out: Path, scratch: Path) -> list[Step]:
    tests = Step(
        "gpu tests",
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-m",
            "gpu",
            "-rA",
            f"--junitxml={out / 'gpu-tests.xml'}",
            str(ROOT / "tests" / "test_gpu.py"),
        ],
        timeout_s=120,
        needs_s=45,
    )
    video = Step(
        "video",
        [
            sys.executable,
            str(ROOT / "benchmarks" / "video.py"),
            "--backend",
            "ort-cuda",
            "--frames",
            "48",
            "--rounds",
            "1",
            "--rss-frames",
            "48",
            "--json",
            str(out / "video.json"),
            "--md",
            str(out / "video.md"),
        ],
        timeout_s=90,
        needs_s=40,
    )
    return [tests, *compare_steps(scratch), video]


def validate(steps: list[Step]) -> list[str]:
    """Each step's arguments parsed by the script it runs, and the GPU tests collected: what would
    break on the day a GPU is at hand shows here, in seconds, on any machine."""
    problems = []
    for step in steps:
        script = Path(step.argv[1]).name if len(step.argv) > 1 else ""
        try:
            if script == "compare.py":
                _parse_compare(step.argv[2:])
            elif script == "video.py":
                _parse_video(step.argv[2:])
            elif step.name == "gpu tests":
                collected = subprocess.run(
                    [*step.argv[:3], "--collect-only", "-q", "-m", "gpu", step.argv[-1]],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    cwd=ROOT,
                )
                if collected.returncode != 0:  # 5: nothing collected; others: an import or marker error
                    tail = (collected.stdout + collected.stderr).strip().splitlines()[-3:]
                    problems.append(f"{step.name}: pytest cannot collect them: {' | '.join(tail)}")
        except SystemExit as exc:  # argparse's way of saying no
            problems.append(f"{step.name}: its arguments are refused (exit {exc.code})")
        except Exception as exc:
            problems.append(f"{step.name}: {type(exc).__name__}: {exc}")
    return problems


class _Parsed(Exception):
    """Raised in place of a script's work, once its own parser has accepted the arguments."""


def _parse_compare(argv: list[str]) -> None:
    import benchmarks.compare as compare
    import sdk.bench.compare as bench

    def planned(args):
        bench.plan_rows(args.backends, args.device)  # unknown row names fail here
        raise _Parsed

    _parse_only(compare.main, argv, bench, "run_from_args", planned)


def _parse_video(argv: list[str]) -> None:
    import benchmarks.video as video

    def measured(args):
        raise _Parsed

    _parse_only(video.main, argv, video, "measure", measured)


def _parse_only(main, argv: list[str], module, work: str, stand_in) -> None:
    """Run a script's ``main`` with its ``module.work`` replaced by ``stand_in`` (which raises _Parsed)."""
    real = getattr(module, work)
    setattr(module, work, stand_in)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            main(argv)
    except _Parsed:
        return
    finally:
        setattr(module, work, real)
    raise RuntimeError(f"{main.__module__} refused the arguments: {said.getvalue().strip()}")


def environment() -> dict:
    """The GPU, driver, CUDA and library versions the results depend on."""
    found: dict = {"python": platform.python_version(), "machine": platform.machine()}
    with contextlib.suppress(Exception):
        query = "name,driver_version,memory.total,pci.bus_id,clocks.max.sm,clocks.max.mem"
        found["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    from sdk.selection import gpu_summary

    found["gpus"] = gpu_summary()
    for name in ("onnxruntime", "numpy", "onnx", "torch", "av"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "?")
        except Exception as exc:  # a missing library is a fact of the machine, not an error here
            found[name] = f"missing ({type(exc).__name__})"
    with contextlib.suppress(Exception):
        import onnxruntime

        found["onnxruntime_file"] = onnxruntime.__file__
        found["onnxruntime_providers"] = onnxruntime.get_available_providers()
        from onnxruntime.capi import build_and_package_info as info

        found["onnxruntime_package"] = getattr(info, "package_name", "?")
        found["onnxruntime_cuda"] = getattr(info, "cuda_version", "?")
        found["onnxruntime_cudnn"] = getattr(info, "cudnn_version", "?")
    return found


def prove_cuda(log: Log) -> dict:
    """ort-cuda runs on CUDAExecutionProvider and equals ort-cpu within 1 grey level on every bundled
    model; raises SDKError (with ORT's own words) when it does not."""
    import numpy as np
    import onnxruntime

    import sdk
    from sdk.errors import SDKError

    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):  # preload_dlls prints each library it cannot load
        onnxruntime.preload_dlls()
    log(f"onnxruntime {onnxruntime.__version__} from {onnxruntime.__file__}")
    log(f"preload_dlls: {chatter.getvalue().strip() or 'loaded the CUDA and cuDNN libraries, nothing to report'}")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise SDKError(
            f"onnxruntime {onnxruntime.__version__} is not the GPU build (providers: "
            f"{onnxruntime.get_available_providers()})"
        )
    photo = _photo(np, 96, 80)
    proof = {}
    for name in ("srcnn3", "srcnn", "espcn"):
        with sdk.Predictor(name, backend="ort-cuda", device="cuda:0") as gpu_predictor:
            providers = gpu_predictor.session.providers
            if providers[:1] != ["CUDAExecutionProvider"]:
                raise SDKError(f"{name}: the ort-cuda session runs on {providers}, not CUDAExecutionProvider")
            on_gpu = gpu_predictor(photo, scale=3)
        with sdk.Predictor(name, backend="ort-cpu") as cpu_predictor:
            on_cpu = cpu_predictor(photo, scale=3)
        diff = int(np.abs(on_gpu.astype(np.int16) - on_cpu.astype(np.int16)).max())
        proof[name] = {"providers": providers, "max_abs_diff_vs_ort_cpu": diff, "within_1": diff <= 1}
        log(f"  {name}: session on {providers[0]}, max |ort-cuda - ort-cpu| = {diff} grey level(s)")
    auto = sdk.Predictor("srcnn3")
    proof["auto"] = {"backend": auto.backend, "device": auto.device}
    auto.close()
    log(f"  auto picks {auto.backend} on {auto.device}")
    return proof


def _photo(np, width: int, height: int):
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC))


def copy_bandwidth() -> float | None:
    """Device-to-device copy rate (bytes read + written per second) through PyTorch: the measured
    ceiling beside the datasheet's, taken in this run."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        source = torch.empty(2**30, dtype=torch.uint8, device="cuda")
        target = torch.empty_like(source)
        for _ in range(3):
            target.copy_(source)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            target.copy_(source)
        end.record()
        torch.cuda.synchronize()
        rate = 2 * source.numel() * 10 / (start.elapsed_time(end) / 1e3)
        del source, target
        torch.cuda.empty_cache()
        return rate
    except Exception:
        return None


def run_step(step: Step, log: Log, env: dict) -> dict:
    log(f"\n== {step.name} (at most {step.timeout_s} s)\n$ {' '.join(step.argv)}")
    start = time.monotonic()
    try:
        done = subprocess.run(
            step.argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=step.timeout_s, check=False
        )
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        code = "timeout"
    for line in output.strip().splitlines()[-60:]:
        log(f"  {line}")
    seconds = time.monotonic() - start
    log(f"   -> exit {code} in {seconds:.0f} s")
    return {"step": step.name, "exit": code, "seconds": round(seconds, 1)}


def merge_compare(steps: list[Step], out: Path) -> list[dict]:
    results, documents = [], []
    for step in steps:
        for path in step.results:
            if Path(path).exists():
                document = json.loads(Path(path).read_text())
                documents.append(document)
                for record in document["results"]:
                    record["model"] = document["config"]["model"]
                    results.append(record)
    if documents:
        merged = {"machine": documents[0]["machine"], "configs": [d["config"] for d in documents], "results": results}
        (out / "compare.json").write_text(json.dumps(merged, indent=1))
    return results


def goals(results: list[dict], proof: dict | None, bandwidth: float | None, gpu_name: str = "") -> list[str]:
    """The issue's goals, each with its measured figure and verdict."""
    lines = ["## Goals", ""]
    if proof:
        worst = max(p["max_abs_diff_vs_ort_cpu"] for k, p in proof.items() if k != "auto")
        lines.append(
            f"- ort-cuda vs ort-cpu within 1 grey level on the bundled models: max {worst} -> "
            f"{'PASS' if worst <= 1 else 'FAIL'} (the GPU tests add a 0..1 fp16 model)"
        )

    def row(batch: int, kind: str, backend: str) -> dict:
        for r in results:
            if (r["model"], r["size"], r["batch"], r["kind"], r["backend"]) == (
                "srcnn3",
                GOAL_SIZE,
                batch,
                kind,
                backend,
            ):
                return r
        return {}

    for batch in (1, 8):
        sdk_row = row(batch, "sdk", "ort-cuda")
        sdk_rate = sdk_row.get("images_per_s")
        raw_rate = row(batch, "raw", "ort-cuda").get("images_per_s")
        torch_rate = row(batch, "reference", "torch").get("images_per_s")
        if sdk_rate and raw_rate:
            ratio = sdk_rate / raw_rate
            lines.append(
                f"- srcnn3 {GOAL_SIZE}² batch {batch}: ort-cuda end to end {ratio:.2f} of the raw engine "
                f"(goal >= 0.8) -> {'PASS' if ratio >= 0.8 else 'FAIL'}{where_the_time_goes(sdk_row)}"
            )
        if sdk_rate and torch_rate:
            ratio = sdk_rate / torch_rate
            lines.append(
                f"- srcnn3 {GOAL_SIZE}² batch {batch}: ort-cuda {ratio:.2f}x torch CUDA eager fp32 "
                f"(goal > 1) -> {'PASS' if ratio > 1 else 'FAIL'}"
            )
    lines += ["", *floor_table(results, GOAL_SIZE, bandwidth, gpu_name)]
    return lines


def where_the_time_goes(record: dict) -> str:
    """The SDK row's own split (host pre-processing, engine call with its copies, host post-processing),
    so that a missed goal says which lever to pull: pre/post on the host -> into the graph or onto the
    GPU; the engine call -> its copies (the raw row has them too) or the engine itself."""
    stages = record.get("stages_ms") or {}
    pre, infer, post = stages.get("pre"), stages.get("infer"), stages.get("post")
    if not (pre and infer and post):
        return ""
    total = pre + infer + post
    host = (pre + post) / total
    verdict = "pre/post on the host dominate" if host > 0.5 else "the engine call dominates"
    return f"; split: pre {pre:.2f} ms, engine {infer:.2f} ms, post {post:.2f} ms ({host:.0%} on the host: {verdict})"


def markdown_rows(results: list[dict]) -> list[str]:
    lines = [
        "| model | size | batch | row | device | latency ms | images/s | max diff vs torch | PSNR dB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        latency = r["latency_ms"]["mean"] if r.get("latency_ms") else None
        cells = [
            r["model"],
            r["size"],
            r["batch"],
            row_name(r),
            r["device"],
            f"{latency:.2f}" if latency else f"not run: {r['reason'][:80]}",
            f"{r['images_per_s']:.1f}" if r.get("images_per_s") else "",
            r.get("max_abs_diff") if r.get("max_abs_diff") is not None else "",
            f"{r['psnr_db']:.1f}" if r.get("psnr_db") else "",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "gpu-check")
    parser.add_argument(
        "--deadline-s", type=float, default=300.0, help="seconds for everything after check.sh's installs (default 300)"
    )
    parser.add_argument("--plan-only", action="store_true", help="validate the steps and stop, GPU or not")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="TEXT",
        help="run only the steps whose name contains one of these (e.g. '1024' video), after the proof: "
        "a second call for what the first one's deadline left out",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdk-gpu-check-") as scratch:  # compare.py's own JSON, merged
        return check(args, out, Path(scratch), started)


def check(args, out: Path, scratch: Path, started: float) -> int:
    log = Log(out / "check.log")
    steps = plan_steps(out, scratch)
    if args.only:
        steps = [s for s in steps if any(text in s.name for text in args.only)]
    problems = validate(steps)
    for problem in problems:
        log(f"PLAN BROKEN: {problem}")
    log(
        f"plan: {len(steps)} steps validated in {time.monotonic() - started:.1f} s"
        + (" (with problems)" if problems else "")
    )
    from sdk.devices import cuda_gpus

    gpus = cuda_gpus()
    summary = ["# GPU check", ""]
    if problems:
        (out / "summary.md").write_text("\n".join([*summary, "Plan broken:", *problems, ""]))
        return 1
    if args.plan_only or not gpus:
        why = "no CUDA GPU here (NVML finds none)" if not gpus else "--plan-only"
        log(f"{why}: nothing to measure; the check needs a CUDA GPU (docs/gpu.md). Done.")
        (out / "summary.md").write_text("\n".join([*summary, f"{why}: the plan validated, nothing run.", ""]))
        return 0
    env_record = environment()
    (out / "env.json").write_text(json.dumps(env_record, indent=1))
    log(json.dumps(env_record, indent=1))
    try:
        proof = prove_cuda(log)
    except Exception as exc:
        log(f"FAIL: ort-cuda does not run on the GPU: {type(exc).__name__}: {exc}")
        summary += [
            f"**ort-cuda does not run on the GPU**: {type(exc).__name__}: {exc}",
            "",
            "Nothing was timed. See check.log and env.json.",
            "",
        ]
        (out / "summary.md").write_text("\n".join(summary))
        return 1
    bandwidth = copy_bandwidth()
    rate, source = datasheet_bandwidth(gpus[0].name)
    log(
        f"device-to-device copy: {bandwidth / 1e12:.2f} TB/s measured; {rate / 1e12:.2f} TB/s by the {source}"
        if bandwidth
        else "device-to-device copy: not measured (torch has no CUDA)"
    )
    child_env = dict(os.environ, PYTHONUNBUFFERED="1")
    ran = []
    for step in steps:
        left = args.deadline_s - (time.monotonic() - started)
        if left < step.needs_s:
            log(f"\n== {step.name}: skipped, {left:.0f} s left of the deadline and it needs {step.needs_s} s")
            ran.append({"step": step.name, "exit": "skipped (deadline)", "seconds": 0})
            continue
        step.timeout_s = int(min(step.timeout_s, left))
        ran.append(run_step(step, log, child_env))
    results = merge_compare(steps, out)
    table = markdown_rows(results)
    (out / "compare.md").write_text("\n".join(["# compare.py rows (GPU check)", "", *table, ""]))
    summary += [
        f"GPU: {', '.join(g['name'] for g in env_record['gpus'])}; driver and versions in env.json.",
        "",
        "## Steps",
        "",
        "| step | exit | seconds |",
        "|---|---|---|",
        *[f"| {r['step']} | {r['exit']} | {r['seconds']} |" for r in ran],
        "",
        *goals(results, proof, bandwidth, gpus[0].name),
        "",
        "## Rows",
        "",
        *table,
        "",
    ]
    (out / "summary.md").write_text("\n".join(summary))
    log("\n".join(summary))
    log(f"total {time.monotonic() - started:.0f} s")
    failed = [r for r in ran if r["exit"] not in (0, "skipped (deadline)")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
