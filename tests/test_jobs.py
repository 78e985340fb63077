"""Folder jobs that resume: kill -9, SIGINT and SIGTERM mid-folder, then the same command again."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdk import jobs

COUNT = 8


@pytest.fixture
def folder(tmp_path):
    """Pictures large enough that the bundled srcnn3 takes a noticeable moment on each."""
    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(0)
    for i in range(COUNT):
        Image.fromarray(rng.integers(0, 255, (144, 144, 3), dtype=np.uint8)).save(source / f"{i:02}.png")
    return source


def _start(source, out):
    cmd = [sys.executable, "-m", "sdk", "upscale", str(source), "-o", str(out), "--scale", "3", "--backend", "ort-cpu"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_outputs(out: Path, count: int, process, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done = list(out.glob("*.png")) if out.exists() else []
        if len(done) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"the job ended before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("no output appeared in time")


def _complete(path: Path) -> bool:
    with Image.open(path) as img:
        img.load()
        return img.size == (432, 432)


def _state(out: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.png")}


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_interrupt_then_resume(folder, tmp_path, signum, code):
    out = tmp_path / "out"
    process = _start(folder, out)
    _wait_for_outputs(out, 2, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    finished = _state(out)
    assert 2 <= len(finished) < COUNT, "the job was meant to be stopped halfway"
    assert all(_complete(out / name) for name in finished)  # what exists is whole
    stray = [p.name for p in out.iterdir() if p.name.endswith(".part")]
    if signum == signal.SIGKILL:
        assert len(stray) <= 1  # kill -9 may leave the temporary file of the image in progress
    else:
        assert stray == [] and "interrupted by" in err and "run the same command again" in err

    again = subprocess.run(process.args, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"skipped {len(finished)} existing output(s)" in again.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in folder.iterdir())  # nothing stray
    assert all(_complete(p) for p in out.iterdir())
    after = _state(out)
    assert {name: after[name] for name in finished} == finished  # finished ones were not rewritten


def test_force_redoes_and_stale_parts_go(folder, tmp_path, runtime_model):
    from sdk import Predictor

    pairs = jobs.plan_outputs(jobs.collect_images([folder]), tmp_path / "out")[:2]
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / f".{pairs[0][1].name}.abc123.part"
    stale.write_bytes(b"half")
    unrelated = tmp_path / "out" / ".someone-else.part"
    unrelated.write_bytes(b"not ours")
    with Predictor(runtime_model, backend="ort-cpu") as predictor:
        first = jobs.run(predictor, pairs, scale=2)
        assert (first.written, first.skipped, first.removed_parts) == (2, 0, 1)
        assert not stale.exists() and unrelated.exists()
        again = jobs.run(predictor, pairs, scale=2)
        assert (again.written, again.skipped, again.exit_code) == (0, 2, 0)
        forced = jobs.run(predictor, pairs, scale=2, force=True)
        assert (forced.written, forced.skipped) == (2, 0)


def test_too_big_for_jpeg_is_reported_not_crashed(tmp_path, runtime_model):
    from sdk import Predictor

    source = tmp_path / "wide.png"
    Image.fromarray(np.zeros((2, 40000, 3), np.uint8)).save(source)
    with Predictor(runtime_model, backend="ort-cpu") as predictor:
        summary = jobs.run(predictor, [(source, tmp_path / "wide.jpg")], scale=2)
    assert summary.exit_code == 1 and "at most 65535 pixels" in summary.failures[0][1]
    assert not (tmp_path / "wide.jpg").exists()
