"""A video's segments upscaled by Ray actors on a real local cluster, joined into the local result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

INSTALL = "pip install 'deploy-sdk[cpu,ray,video]' (make install-dev installs it)"
ray = pytest.importorskip("ray", reason=f"Ray is not installed: {INSTALL}")
pytest.importorskip("ray.data", reason=f"Ray Data is not installed: {INSTALL}")
pytest.importorskip("av", reason=f"PyAV is not installed: {INSTALL}")

import clips  # noqa: E402

import sdk  # noqa: E402
from sdk.scale.video_ray import upscale_video as upscale_on_ray  # noqa: E402
from sdk.video import upscale_video  # noqa: E402
from sdk.video.segments import work_folder  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
TESTS = Path(__file__).parent
SUBTITLES = "1\n00:00:00,000 --> 00:00:00,300\nHello\n"
VFR = [40, 40, 80, 40, 20, 60, 40, 40, 100, 40, 40, 40, 40, 60, 40, 40]


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=128 * 2**20,
        logging_level="warning",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}},
    )
    yield
    ray.shutdown()


def test_segments_on_ray_actors_join_into_the_local_result(cluster, tmp_path, runtime_model):
    """Four segments, two actors: the joined file has the local run's frames (count, timestamps and
    the very packets: each segment is encoded alike wherever it runs), and the audio and subtitles
    once, as in the source."""
    source = clips.make(
        tmp_path / "in.mkv", clips.Clip(frames=16, keyint=4, durations=VFR, audio="aac", subtitles=SUBTITLES)
    )
    local = tmp_path / "local.mkv"
    with sdk.Predictor(runtime_model, backend="ort-cpu") as predictor:
        upscale_video(predictor, source, local, scale=2, segment_seconds=0.1)
    remote = tmp_path / "ray.mkv"
    done = upscale_on_ray(
        source, remote, model=runtime_model, scale=2, backend="ort-cpu", segment_seconds=0.1, actors=2
    )
    assert not done.failures and done.actors == 2 and done.backends == {"ort-cpu on cpu"}
    assert done.summary.segments == 4 and done.summary.frames == 16
    assert clips.frame_times(remote) == clips.frame_times(local) == clips.frame_times(source)
    assert clips.packets(remote, "video") == clips.packets(local, "video")
    assert clips.packets(remote, "audio") == clips.packets(source, "audio")
    assert clips.packets(remote, "subtitles") == clips.packets(source, "subtitles")
    assert not work_folder(remote).exists()


def test_a_bad_scale_fails_on_the_driver_before_any_actor(cluster, tmp_path):
    source = clips.make(tmp_path / "in.mkv", clips.Clip(frames=2))
    with pytest.raises(sdk.InputError, match="upscales by 3 only"):
        upscale_on_ray(source, tmp_path / "out.mkv", model="srcnn", scale=2)
    assert not (tmp_path / "out.mkv").exists() and not work_folder(tmp_path / "out.mkv").exists()
