"""The folder job on a real local Ray cluster: outputs equal the local Predictor's, a corrupt file is
reported and costs nothing else, a killed actor is restarted, and a re-run resumes.

One two-CPU cluster on 127.0.0.1 serves the whole module; every wait is bounded.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

INSTALL = "pip install 'deploy-sdk[cpu,ray]' (make install-dev installs it)"
ray = pytest.importorskip("ray", reason=f"Ray is not installed: {INSTALL}")
pytest.importorskip("ray.data", reason=f"Ray Data is not installed: {INSTALL}")

import sdk  # noqa: E402
from sdk.scale.ray import FileUpscaler, Upscaler, ship_model, upscale_files  # noqa: E402

# Ray Data warns about its own deprecated settings whenever its context is copied; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
TESTS = Path(__file__).parent
IMAGES = 8


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=128 * 2**20,
        logging_level="warning",
        # Workers import this module to unpickle the test's subclass of FileUpscaler.
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photo):
    folder = tmp_path_factory.mktemp("ray-in")
    for i in range(IMAGES):
        Image.fromarray(np.roll(photo, 5 * i, axis=1)).save(folder / f"{i:02d}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is not a picture")
    return folder


def expected(model, source: Path, scale: int) -> np.ndarray:
    with sdk.Predictor(model) as local:
        return local(np.asarray(Image.open(source).convert("RGB")), scale=scale)


@ray.remote(num_cpus=0)
class Mailbox:
    """Where each actor of the job posts its own handle when it (re)starts."""

    def __init__(self):
        self.handles = []

    def post(self, handle):
        self.handles.append(handle)

    def count(self) -> int:
        return len(self.handles)

    def latest(self):
        return self.handles[-1]


class PostingUpscaler(FileUpscaler):
    """The job's own actor, plus its handle posted to the mailbox and a pause per batch, so that the
    test can kill it while it still has work."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        mailbox = ray.get_actor("mailbox")
        ray.get(mailbox.post.remote(ray.get_runtime_context().current_actor), timeout=30)

    def __call__(self, batch):
        time.sleep(0.3)
        return super().__call__(batch)


def kill_midway(out: Path, mailbox, report: dict) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(list(out.glob("*.png"))) >= 2 and ray.get(mailbox.count.remote(), timeout=10) >= 1:
            handle = ray.get(mailbox.latest.remote(), timeout=10)
            report["written_before_kill"] = len(list(out.glob("*.png")))
            ray.kill(handle, no_restart=False)  # the actor dies; Ray may restart it
            return
        time.sleep(0.05)


def test_job_survives_a_killed_actor_reports_the_corrupt_file_and_resumes(cluster, folder, runtime_model, tmp_path):
    out = tmp_path / "out"
    mailbox = Mailbox.options(name="mailbox").remote()
    report = {}
    killer = threading.Thread(target=kill_midway, args=(out, mailbox, report), daemon=True)
    killer.start()
    summary = upscale_files(
        [folder],
        out,
        model=runtime_model,
        scale=2,
        backend="ort-cpu",
        actors=1,
        batch_size=1,
        max_restarts=2,
        max_task_retries=2,
        upscaler=PostingUpscaler,
    )
    killer.join(timeout=10)

    assert 2 <= report["written_before_kill"] < IMAGES, "the actor was not killed midway"
    assert ray.get(mailbox.count.remote(), timeout=10) == 2, "the killed actor was not restarted"
    corrupt = folder / "corrupt.png"
    assert summary.written == IMAGES and summary.skipped == 0 and summary.exit_code == 1
    assert [source for source, _ in summary.failures] == [corrupt] and "not an image" in summary.failures[0][1]
    assert summary.backends == {"ort-cpu on cpu"}
    for i in range(IMAGES):
        name = f"{i:02d}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), expected(runtime_model, folder / name, 2))
    assert not (out / "corrupt.png").exists()

    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = upscale_files([folder], out, model=runtime_model, scale=2)
    assert again.skipped == IMAGES and again.written == 0 and [source for source, _ in again.failures] == [corrupt]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before, "a finished output was redone"
    assert not list(out.glob(".*.part")), "a temporary file of the killed actor was left behind"
    ray.kill(mailbox)


class TileCountingUpscaler(Upscaler):
    """Upscaler plus a column that says in how many tiles the actor's Predictor ran each image."""

    def __call__(self, batch):
        images, tiles = [], []
        for image in batch["image"]:
            seen = [1]
            images.append(
                self.predictor(image, scale=self.scale, tile=self.tile, progress=lambda done, total: seen.append(total))
            )
            tiles.append(max(seen))
        return {**batch, "image": images, "tiles": np.array(tiles)}


def test_the_model_and_its_settings_travel_and_big_images_are_tiled(cluster, runtime_model, tmp_path, photo):
    import onnx

    # A model whose weights live in a file beside it: both must travel.
    folder = tmp_path / "travelling"
    folder.mkdir()
    onnx.save_model(
        onnx.load(runtime_model),
        str(folder / "net.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="net.weights",
        size_threshold=0,
    )
    assert (folder / "net.weights").stat().st_size > 0
    shipped = ship_model(folder / "net.onnx")
    shutil.rmtree(folder)  # the actors must not need the driver's files
    big = np.asarray(Image.fromarray(photo).resize((160, 128)))
    images = [photo, big]  # two sizes: a ragged column
    dataset = ray.data.from_items([{"image": image, "index": i} for i, image in enumerate(images)])
    rows = dataset.map_batches(
        TileCountingUpscaler,
        batch_size=2,
        compute=ray.data.ActorPoolStrategy(size=1),
        fn_constructor_kwargs={
            "model": shipped,
            "scale": 3,
            "memory_budget": "8MB",
            "options": {"intra_op_num_threads": 1},
        },
    ).take_all()
    assert len(rows) == 2
    with sdk.Predictor(runtime_model, backend="ort-cpu", memory_budget="8MB") as local:  # as the actor runs it
        for row in rows:
            np.testing.assert_array_equal(row["image"], local(images[row["index"]], scale=3))
    tiles = {row["index"]: row["tiles"] for row in rows}
    assert tiles[0] == 1 and tiles[1] > 1, f"the big image was not tiled inside the actor: {tiles}"


def test_a_bad_scale_fails_on_the_driver_before_any_actor(cluster, folder, tmp_path):
    with pytest.raises(sdk.InputError, match="upscales by 3 only"):
        upscale_files([folder], tmp_path / "out", model="srcnn", scale=2)
    assert not (tmp_path / "out").exists()


def test_the_command_line_stops_on_sigterm_and_resumes(photo, tmp_path):
    # Pictures big enough for the bundled srcnn3 to take a while, so that SIGTERM lands midway.
    folder = tmp_path / "big"
    folder.mkdir()
    big = np.asarray(Image.fromarray(photo).resize((192, 160)))
    for i in range(IMAGES):
        Image.fromarray(np.roll(big, 7 * i, axis=0)).save(folder / f"{i:02d}.png")
    (folder / "corrupt.png").write_bytes(b"not a picture at all")
    out = tmp_path / "cli-out"
    command = [sys.executable, "-m", "sdk", "upscale", str(folder), "-o", str(out), "--scale", "3", "--ray"]

    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.png")) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 143, stderr
    assert "interrupted by SIGTERM: run the same command again to go on" in stderr
    written = sorted(p.name for p in out.glob("*.png"))
    assert 1 <= len(written) < IMAGES, f"SIGTERM did not land midway: {written}"

    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stderr  # the corrupt file: some inputs failed
    assert f"skipped {len(written)} existing output(s)" in done.stderr
    assert f"upscaled {IMAGES - len(written)} of {IMAGES + 1 - len(written)} image(s) x3 on Ray" in done.stderr
    assert f"failed {folder / 'corrupt.png'}: " in done.stderr
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:02d}.png" for i in range(IMAGES)]
    assert not list(out.glob(".*.part"))
    for name in (written[0], "07.png"):  # one from each run
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), expected("srcnn3", folder / name, 3))
