"""Memory after a large request: a real ``sdk serve`` returns near its idle size within 10 s, and the
release runs once per burst of large requests, after it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import psutil
import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")
from serving import Server, encode, picture


def test_rss_is_back_within_1_5x_idle_10_s_after_a_large_request(tmp_path):
    with Server("srcnn3", log_dir=tmp_path) as server:
        process = psutil.Process(server.proc.pid)
        small = encode(picture(64, 64))
        for _ in range(3):
            assert (
                server.client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=small).status_code == 200
            )
        time.sleep(1.0)
        idle = process.memory_info().rss
        large = encode(picture(640, 640, seed=2))  # windows of the default tile: the engine's largest runs
        response = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=large, timeout=300)
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while (rss := process.memory_info().rss) > 1.5 * idle and time.monotonic() < deadline:
            time.sleep(0.25)
        assert rss <= 1.5 * idle, f"{rss / 2**20:.0f} MiB 10 s after, {idle / 2**20:.0f} MiB idle"


class _Batcher:
    def __init__(self):
        self.calls = []

    def call(self, fn):
        self.calls.append(threading.current_thread().name)
        fn()
        future = Future()
        future.set_result(None)
        return future


class _Session:
    released = 0

    def release_memory(self):
        self.released += 1


def test_the_release_runs_once_after_a_burst_of_large_requests_and_never_for_small_ones():
    from sdk.serve.release import LARGE_PIXELS, Releaser

    batcher, session = _Batcher(), _Session()
    releaser = Releaser(batcher, session, delay_s=0.2)
    releaser.after(LARGE_PIXELS - 1)
    time.sleep(0.4)
    assert session.released == 0
    for _ in range(5):
        releaser.after(LARGE_PIXELS)
        time.sleep(0.05)
    assert session.released == 0  # not during the burst
    time.sleep(0.5)
    assert session.released == 1 and releaser.releases == 1 and len(batcher.calls) == 1
    releaser.after(LARGE_PIXELS)
    releaser.close()  # a closing server cancels the pending release
    time.sleep(0.4)
    assert session.released == 1
