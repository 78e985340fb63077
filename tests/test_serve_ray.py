"""``sdk serve --ray``: the same app on a local Ray cluster, two replicas, one killed under load."""

from __future__ import annotations

import json
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
    """The model replica processes (not the front's) of this server's own cluster (its descendants)."""
    from sdk.serve.ray_serve import MODEL_DEPLOYMENT

    root = psutil.Process(server.proc.pid)
    found = []
    for p in root.children(recursive=True):
        try:
            if f"ServeReplica:sdk:{MODEL_DEPLOYMENT}" in " ".join(p.cmdline()):
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

        victim = replicas(server)[0]
        answered, lock = [], threading.Lock()

        def one(_):
            try:
                r = httpx.post(
                    f"{server.url}/v1/models/srcnn3/upscale", params={"scale": 3}, content=payload, timeout=120
                )
            except httpx.HTTPError as exc:  # no answer at all: what must not happen
                return None, repr(exc).encode()
            with lock:  # the 6th answer kills a replica: the load is in full swing, 8 requests in flight
                answered.append(1)
                if len(answered) == 6:
                    os.kill(victim.pid, signal.SIGKILL)
            return r.status_code, r.content

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(32)))
        # Those running on the killed replica when it died were sent again by the front: every one is served.
        assert [status for status, _ in answers] == [200] * 32, [a for a in answers if a[0] != 200][:2]
        assert all(max_diff(decode(body), want) <= 1 for _, body in answers)
        # Ray Serve starts a new replica; the server goes on answering.
        deadline = time.monotonic() + 120
        while len(replicas(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(replicas(server)) == 2
        after = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 3}, content=payload)
        assert after.status_code == 200
        # The kill did land on running requests (Ray forwards the front's log to the driver's output).
        assert "sent again" in server.log(), server.log()[-3000:]
        code = server.stop(timeout=90)
    assert code == 0


def test_the_front_sends_a_lost_request_again_and_answers_503_when_every_attempt_is_lost(monkeypatch):
    """Without a cluster: the front against a handle whose replicas die, and call_app on the real app."""
    import asyncio

    from ray.exceptions import ActorDiedError
    from starlette.requests import Request

    from sdk import Predictor
    from sdk.serve import ray_serve
    from sdk.serve.app import create_app
    from sdk.serve.settings import ServeSettings

    monkeypatch.setattr(ray_serve, "RETRY_PAUSE_S", 0.0)
    image = picture(20, 24, seed=5)
    with Predictor("srcnn3", backend="ort-cpu") as p:
        app = create_app(p)
        want = p(image, scale=2)

        class Handle:  # DeploymentHandle's shape: handle.forward.remote(call) is awaitable
            def __init__(self, deaths):
                self.deaths, self.calls = deaths, 0
                self.forward = self

            def remote(self, call):
                self.calls += 1
                if self.deaths is None:  # no replica ever takes it
                    return Response(asyncio.sleep(3600))
                if self.calls <= self.deaths:

                    async def died():
                        raise ActorDiedError()

                    return Response(died())
                return Response(ray_serve.call_app(app, call))

        class Response:  # DeploymentResponse's shape: awaitable, cancellable
            cancelled = 0

            def __init__(self, coroutine):
                self.coroutine = coroutine

            def __await__(self):
                return self.coroutine.__await__()

            def cancel(self):
                Response.cancelled += 1
                self.coroutine.close()

        def request():
            body = encode(image)
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/v1/models/srcnn3/upscale",
                "query_string": b"scale=2",
                "headers": [(b"content-length", str(len(body)).encode())],
                "client": ("127.0.0.1", 1),
            }
            sent = []

            async def receive():
                if sent:
                    await asyncio.sleep(3600)
                sent.append(1)
                return {"type": "http.request", "body": body, "more_body": False}

            return Request(scope, receive)

        async def run(deaths, **settings):
            handle = Handle(deaths)
            return await ray_serve.Front(handle, ServeSettings(**settings))(request()), handle.calls

        answer, calls = asyncio.run(run(ray_serve.ATTEMPTS - 1))
        assert answer.status_code == 200 and calls == ray_serve.ATTEMPTS
        assert answer.headers["content-type"] == "image/png" and answer.headers["x-sdk-model"] == "srcnn3"
        assert max_diff(decode(answer.body), want) == 0
        answer, calls = asyncio.run(run(ray_serve.ATTEMPTS))
        assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
        assert "lost" in json.loads(answer.body)["error"] and calls == ray_serve.ATTEMPTS
        monkeypatch.setattr(ray_serve, "QUEUE_GRACE_S", 0.0)
        started = time.monotonic()
        answer, calls = asyncio.run(run(None, timeout_s=0.3))  # bounded even when no replica comes
        assert answer.status_code == 504 and time.monotonic() - started < 5 and Response.cancelled == 1
        assert "no replica answered" in json.loads(answer.body)["error"]
        app.server.close()
