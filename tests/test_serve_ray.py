"""``sdk serve --ray``: the same app on a local Ray cluster, two replicas, one killed under load."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")
pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'deploy-sdk[serve,ray]'")
psutil = pytest.importorskip("psutil")

from serving import Server, decode, encode, max_diff, picture  # noqa: E402


def replicas(server) -> list[psutil.Process]:
    """The Ray Serve replica processes of this server's own cluster (its descendants)."""
    root = psutil.Process(server.proc.pid)
    found = []
    for p in root.children(recursive=True):
        try:
            if "ServeReplica:sdk" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_two_replicas_equal_the_single_server_and_survive_a_killed_replica(tmp_path):
    from sdk import Predictor

    images = [picture(40, 52, seed=i) for i in range(4)] + [picture(150, 90, seed=9)]
    with Predictor("srcnn3", backend="ort-cpu") as p:
        expected = [p(i, scale=2) for i in images]
    with Server("srcnn3", "--ray", "--replicas", "2", "--tile", "64", log_dir=tmp_path, start_timeout=240) as server:
        deadline = time.monotonic() + 120
        while len(replicas(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(replicas(server)) == 2, server.log()[-3000:]
        for image, want in zip(images, expected):
            response = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=encode(image))
            assert response.status_code == 200, response.text
            assert max_diff(decode(response.content), want) <= (0 if image.shape[0] < 64 else 1)

        payload = encode(picture(96, 96, seed=3))
        want = Predictor("srcnn3", backend="ort-cpu")(picture(96, 96, seed=3), scale=3)

        def one(_):
            try:
                r = httpx.post(f"{server.url}/v1/models/srcnn3/upscale", params={"scale": 3}, content=payload, timeout=120)
                return r.status_code, r.content
            except httpx.HTTPError as exc:  # no answer at all: what must not happen
                return None, repr(exc).encode()

        victim = replicas(server)[0]
        killer = threading.Timer(1.0, lambda: os.kill(victim.pid, signal.SIGKILL))
        killer.start()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(32)))
        killer.join()
        assert all(status is not None for status, _ in answers), [a for a in answers if a[0] is None][:2]
        ok = [body for status, body in answers if status == 200]
        assert all(max_diff(decode(body), want) <= 1 for body in ok)
        # Requests running on the killed replica when it died get a 5xx from Ray's proxy; the rest are served.
        assert all(status == 200 or status >= 500 for status, _ in answers)
        assert len(ok) >= 32 - 8
        # Ray Serve starts a new replica; the server goes on answering.
        deadline = time.monotonic() + 120
        while len(replicas(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(replicas(server)) == 2
        after = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 3}, content=payload)
        assert after.status_code == 200
        code = server.stop(timeout=90)
    assert code == 0
