"""The GPU check's scripts, run here where no GPU is, so that they cannot rot between the days a GPU is
at hand: check.sh in its no-GPU mode (it validates every step's arguments against the real scripts),
and carry-wheel.sh's planning on a small fake wheel (no network)."""

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT / "benchmarks" / "gpu"


def _no_nvidia_smi(tmp_path) -> dict:
    """PATH with an nvidia-smi that finds no GPU first, whatever this machine has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed: no devices were found' >&2\nexit 9\n")
    fake.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=sys.executable)


@pytest.mark.slow  # runs the scripts in subprocesses
def test_check_sh_without_a_gpu_validates_the_plan_and_ends_cleanly(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(GPU / "check.sh")],
        env={**_no_nvidia_smi(tmp_path), "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no NVIDIA GPU here" in done.stdout
    assert re.search(r"plan: \d+ steps validated", done.stdout) and "PLAN BROKEN" not in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["check.log", "summary.md"]
    assert "nothing run" in (out / "summary.md").read_text()


def test_check_py_reports_a_broken_step(tmp_path, monkeypatch):
    """The validation is real: a compare.py row name that does not exist breaks the plan."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu import check

    steps = check.compare_steps(tmp_path)[:1]
    steps[0].argv[steps[0].argv.index("--backends") + 1] = "no-such-row"
    problems = check.validate(steps)
    assert len(problems) == 1 and "no-such-row" in problems[0]


def test_check_py_plans_at_most_the_files_the_device_tool_returns(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu import check

    assert len(check.FILES) <= 8
    for step in check.plan_steps(tmp_path / "out", tmp_path / "scratch"):
        written = [a.split("=", 1)[-1] for a in step.argv if str(tmp_path / "out") in a]
        assert all(Path(w).name in check.FILES for w in written), step.name


def test_the_memory_floor_of_srcnn3_at_512():
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu.floor import H200_BANDWIDTH, datasheet_bandwidth, floor_bytes
    from sdk.model import Model

    moved = floor_bytes(Model("srcnn3"), 512, 1, 3)
    # image 3x512² in, 3x1536² out, upsampled 3x1536², 64x1536² and 32x1536² (ReLU fused) and the last
    # conv's 3x1536² before its Add each written and read once, weights read once (float32 throughout).
    side = 1536 * 1536 * 4
    expected = 3 * 512 * 512 * 4 + 3 * side + 2 * (3 + 64 + 32 + 3) * side
    assert abs(moved - expected) < 0.01 * expected
    assert 0.3 < moved / H200_BANDWIDTH * 1e3 < 0.5  # ms: about 0.4
    assert datasheet_bandwidth("NVIDIA H100 80GB HBM3")[0] == 3.35e12
    assert datasheet_bandwidth("NVIDIA H100 PCIe")[0] == 2.0e12
    assert datasheet_bandwidth("NVIDIA H200")[0] == H200_BANDWIDTH


def _split_parts() -> Path | None:
    for folder in (ROOT, *ROOT.parents):
        for candidate in (
            folder / "shared" / "tools" / "split-parts",
            folder.parent / "shared" / "tools" / "split-parts",
        ):
            if candidate.exists():
                return candidate
    return None


def _fake_wheel(folder: Path, cuda: str, megabytes: float) -> Path:
    folder.mkdir(exist_ok=True)
    wheel = folder / "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(
            "onnxruntime/capi/build_and_package_info.py",
            f"package_name = 'onnxruntime-gpu'\n__version__ = '1.31.1'\ncuda_version = '{cuda}'\n",
        )
        archive.writestr("onnxruntime/capi/libonnxruntime_providers_cuda.so", os.urandom(int(megabytes * 2**20)))
    return wheel


@pytest.fixture
def carry_root(tmp_path):
    if _split_parts() is None:
        pytest.skip("shared/tools/split-parts is not beside or above this checkout (the team's shared folder)")
    root = tmp_path / "checkout"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def _carry(root: Path, wheels: Path):
    return subprocess.run(
        ["bash", str(GPU / "carry-wheel.sh"), "--from", str(wheels), "--part-mib", "1"],
        env=dict(os.environ, SDK_CARRY_ROOT=str(root)),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow  # runs the scripts in subprocesses
def test_carry_wheel_plans_one_call_per_part_and_the_last_runs_the_check(carry_root, tmp_path):
    wheel = _fake_wheel(tmp_path / "wheels", "13.0", 2.5)
    done = _carry(carry_root, wheel.parent)
    assert done.returncode == 0, done.stderr
    calls = [line for line in done.stdout.splitlines() if line.startswith("run(")]
    parts = sorted((carry_root / ".carry").glob("p*/part"))
    assert len(calls) == len(parts) == 3  # 2.5 MiB and a little in 1 MiB parts
    for i, call in enumerate(calls):
        assert f'carry=[".carry/p{i}"]' in call and f"cat .carry/p{i}/part >> /tmp/sdk-carry/wheels.tar" in call
    assert "rm -rf /tmp/sdk-carry" in calls[0] and "check.sh" not in "".join(calls[:-1])
    # Joining the parts as the calls do gives the tar whose sha256 the last call checks.
    joined = b"".join(p.read_bytes() for p in parts)
    sha = hashlib.sha256(joined).hexdigest()
    assert f"SDK_CARRY_SHA256={sha} bash benchmarks/gpu/check.sh" in calls[-1]
    (tmp_path / "joined.tar").write_bytes(joined)
    with tarfile.open(tmp_path / "joined.tar") as archive:
        assert wheel.name in {Path(n).name for n in archive.getnames()}
    exclude = (carry_root / ".git" / "info" / "exclude").read_text().splitlines()
    assert "/.carry/" in exclude and not (carry_root / ".carry-build").exists()


@pytest.mark.slow  # runs the scripts in subprocesses
def test_carry_wheel_refuses_a_wheel_not_built_for_cuda_13(carry_root, tmp_path):
    done = _carry(carry_root, _fake_wheel(tmp_path / "wheels", "12.8", 0.1).parent)
    assert done.returncode == 1 and "built for CUDA '12.8', not 13" in done.stderr


def _gpu_listed_by_nvidia_smi(tmp_path) -> dict:
    """An nvidia-smi that lists a GPU NVML then does not find: check.sh's set-up runs in full, and
    check.py stops at NVML's answer."""
    env = _no_nvidia_smi(tmp_path)
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Stand-in (UUID: GPU-0)'\n")
    return env


def _tiny_wheel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "carriedpkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("carriedpkg/__init__.py", "CARRIED = True\n")
        archive.writestr("carriedpkg-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: carriedpkg\nVersion: 0.1\n")
        archive.writestr(
            "carriedpkg-0.1.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(
            "carriedpkg-0.1.dist-info/RECORD",
            "carriedpkg/__init__.py,,\ncarriedpkg-0.1.dist-info/METADATA,,\ncarriedpkg-0.1.dist-info/WHEEL,,\n"
            "carriedpkg-0.1.dist-info/RECORD,,\n",
        )
    return wheel


@pytest.mark.slow  # runs the scripts in subprocesses
def test_check_sh_installs_the_carried_wheels_after_checking_their_sha256(tmp_path):
    carry = tmp_path / "carry"
    carry.mkdir()
    wheel = _tiny_wheel(tmp_path / "wheels")
    with tarfile.open(carry / "wheels.tar", "w") as archive:
        archive.add(wheel, arcname=wheel.name)
    sha = hashlib.sha256((carry / "wheels.tar").read_bytes()).hexdigest()
    env = {**_gpu_listed_by_nvidia_smi(tmp_path), "OUT": str(tmp_path / "out"), "SDK_CARRY_DIR": str(carry)}
    env["SDK_CHECK_SITE"] = str(tmp_path / "site")

    wrong = subprocess.run(
        ["bash", str(GPU / "check.sh")], env={**env, "SDK_CARRY_SHA256": "0" * 64}, capture_output=True, text=True
    )
    assert wrong.returncode == 1 and "a part is missing" in wrong.stdout

    done = subprocess.run(
        ["bash", str(GPU / "check.sh")],
        env={**env, "SDK_CARRY_SHA256": sha},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "carriedpkg" / "__init__.py").exists()
    assert "no CUDA GPU here (NVML finds none)" in done.stdout  # check.py ran, on the carried PYTHONPATH


@pytest.mark.slow  # runs the scripts in subprocesses
def test_check_sh_refuses_a_sha256_without_the_joined_parts(tmp_path):
    env = {**_gpu_listed_by_nvidia_smi(tmp_path), "OUT": str(tmp_path / "out")}
    env.update(SDK_CARRY_DIR=str(tmp_path / "nothing-here"), SDK_CARRY_SHA256="0" * 64)
    done = subprocess.run(["bash", str(GPU / "check.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "ran on another machine" in done.stdout


def _record(model, size, batch, kind, backend, device, ms):
    stages = {"pre": 0.1 * ms, "infer": 0.3 * ms, "post": 0.6 * ms} if kind == "sdk" else None
    return {
        "backend": backend, "kind": kind, "options": {}, "size": size, "batch": batch, "device": device,
        "available": True, "reason": "", "latency_ms": {"mean": ms}, "images_per_s": batch / (ms / 1e3),
        "max_abs_diff": 0, "psnr_db": 60.0, "passed": True, "stages_ms": stages,
    }  # fmt: skip


def test_check_py_on_a_gpu_writes_the_goals_from_the_rows(tmp_path, monkeypatch):
    """The GPU path after the proof (steps, merging, goals, floor), fed rows as compare.py writes
    them: what a GPU day would run first, run here."""
    import json

    sys.path.insert(0, str(ROOT))
    import sdk.devices
    from benchmarks.gpu import check
    from sdk.devices import GPU

    monkeypatch.setattr(sdk.devices, "cuda_gpus", lambda: (GPU(0, "NVIDIA H200", (9, 0), 141 * 2**30),))
    monkeypatch.setattr(check, "validate", lambda steps: [])
    monkeypatch.setattr(check, "environment", lambda: {"gpus": [{"name": "NVIDIA H200"}]})
    proof = {"srcnn3": {"max_abs_diff_vs_ort_cpu": 1}, "auto": {"backend": "ort-cuda", "device": "cuda:0"}}
    monkeypatch.setattr(check, "prove_cuda", lambda log: proof)
    monkeypatch.setattr(check, "copy_bandwidth", lambda: 4.3e12)

    def fake_step(step, log, env):
        if step.results:
            model = step.argv[step.argv.index("--model") + 1]
            size = int(step.argv[step.argv.index("--size") + 1])
            batches = [int(b) for b in step.argv[step.argv.index("--batch") + 1 : step.argv.index("--backends")]]
            rows = [
                _record(model, size, b, kind, backend, "cuda:0", ms * b)
                for b in batches
                for kind, backend, ms in (
                    ("sdk", "ort-cuda", 2.0),
                    ("raw", "ort-cuda", 1.8),
                    ("reference", "torch", 2.5),
                )
            ]
            document = {"machine": {}, "config": {"model": model}, "results": rows}
            Path(step.results[0]).write_text(json.dumps(document))
        return {"step": step.name, "exit": 0, "seconds": 1.0}

    monkeypatch.setattr(check, "run_step", fake_step)
    out = tmp_path / "out"
    assert check.main(["--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "ort-cuda vs ort-cpu within 1 grey level on the bundled models: max 1 -> PASS" in summary
    assert (
        "ort-cuda end to end 0.90 of the raw engine (goal >= 0.8) -> PASS; split: pre 0.20 ms, engine 0.60 ms"
        in summary
    )
    assert "(70% on the host: pre/post on the host dominate)" in summary
    assert "ort-cuda 1.25x torch CUDA eager fp32 (goal > 1) -> PASS" in summary
    # srcnn3 512² batch 1: 1.96 GB at 4.8 TB/s = 0.408 ms, against 2.0 ms: 0.204 of the floor.
    assert re.search(r"\| ort-cuda on cuda:0 \| 1 \| 2\.000 \| 0\.40\d \| 0\.20\d \| 0\.45\d \| 0\.22\d \|", summary)
    assert "srcnn3 512² batch 8: ort-cuda end to end 0.90 of the raw engine" in summary
    assert "| torch eager fp32 on cuda:0 | 8 | 20.000 |" in summary
    assert {p.name for p in out.iterdir()} <= set(check.FILES)
    merged = json.loads((out / "compare.json").read_text())
    assert {r["model"] for r in merged["results"]} == {"srcnn3", "espcn"}


@pytest.mark.slow  # runs the scripts in subprocesses
def test_the_proof_refuses_the_cpu_build_of_onnxruntime(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu import check
    from sdk.errors import SDKError

    log = check.Log(tmp_path / "check.log")
    with pytest.raises(SDKError, match="not the GPU build"):
        check.prove_cuda(log)
    assert "preload_dlls:" in (tmp_path / "check.log").read_text()
    found = check.environment()  # what env.json records, whatever the machine has
    assert found["onnxruntime"] and found["gpus"] == [] and "onnxruntime_providers" in found


def test_the_torch_fp16_row_is_planned_when_named_and_not_judged():
    from sdk.bench.compare import plan_rows, reduced_precision

    named = [r for r in plan_rows(["ort-cpu", "torch-fp16"], "cpu") if r.kind == "autocast"]
    assert len(named) == 1 and dict(named[0].options) == {"precision": "fp16"}
    assert reduced_precision({"options": dict(named[0].options)})  # its error is shown, not judged
    assert not [r for r in plan_rows(["all"], "cpu") if r.kind == "autocast"]  # no CPU run pays for it
