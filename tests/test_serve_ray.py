"""``sdk serve --ray``: the same app on a local Ray cluster, two replicas, one killed under load."""

from __future__ import annotations

import json
import logging
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
        # The limits of sdk serve, through Ray Serve's proxy: JSON with the request id.
        refused = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 99}, content=encode(images[0]))
        assert refused.status_code == 422 and "--max-scale" in refused.json()["error"], refused.text
        assert refused.headers["x-request-id"]

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


def test_the_front_keeps_sdk_serve_s_limits_and_answers_json_with_the_request_id(caplog):
    """Without a cluster: the front's own answers (body too large or too slow, a failure of its own)
    and the replica's (a scale over --max-scale, JSON nested too deep) are JSON with one request id,
    which names the log lines; nothing internal is in an answer."""
    import asyncio

    from starlette.requests import Request

    from sdk import Predictor
    from sdk.serve import ray_serve
    from sdk.serve.app import create_app
    from sdk.serve.settings import ServeSettings

    class Handle:  # DeploymentHandle's shape, forwarding to the app in this process
        def __init__(self, app, fail=None):
            self.app, self.fail, self.calls = app, fail, 0
            self.forward = self

        def remote(self, call):
            self.calls += 1
            if self.fail is not None:
                raise self.fail
            return ray_serve.call_app(self.app, call)

    def request(path, query=b"", body=b"", trickle=False, content_length=None):
        length = len(body) if content_length is None else content_length
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": query,
            "headers": [(b"content-length", str(length).encode())],
            "client": ("127.0.0.1", 1),
        }
        sent = []

        async def receive():
            if sent or trickle:
                await asyncio.sleep(3600)
            sent.append(1)
            return {"type": "http.request", "body": body, "more_body": False}

        return Request(scope, receive)

    def answer(front, *args, **kwargs):
        sent = request(*args, **kwargs)
        response = asyncio.run(front(sent))
        message = json.loads(response.body)["error"] if response.status_code >= 400 else None
        # One id, the front's: a replica's answer and log lines carry the same.
        assert response.headers.getlist("x-request-id") == [sent.scope["sdk.request_id"]]
        return response.status_code, message, response.headers["x-request-id"]

    upscale, infer = "/v1/models/srcnn3/upscale", "/v2/models/srcnn3/infer"
    settings = ServeSettings(max_body_bytes=2**20, body_timeout_s=0.3)
    with Predictor("srcnn3", backend="ort-cpu") as p:
        app = create_app(p, settings)
        try:
            handle = Handle(app)
            front = ray_serve.Front(handle, settings)
            status, message, _ = answer(front, upscale, b"scale=2", content_length=2**21)
            assert status == 413 and "--max-body-mb" in message and handle.calls == 0
            started = time.monotonic()
            status, message, _ = answer(front, upscale, b"scale=2", trickle=True, content_length=1000)
            assert status == 408 and "--body-timeout" in message and time.monotonic() - started < 5
            assert handle.calls == 0
            status, message, rid = answer(front, upscale, b"scale=99", body=encode(picture(8, 8)))
            assert status == 422 and "--max-scale" in message and handle.calls == 1
            status, message, rid = answer(front, infer, body=b"[" * 5000 + b"]" * 5000)
            assert status == 400 and "--max-json-depth" in message
            status, _, rid = answer(front, upscale, b"scale=2", body=encode(picture(8, 8)))
            assert status == 200 and rid
            secret = "/secret/cache/model-0123.onnx"
            with caplog.at_level(logging.ERROR, logger="sdk.serve"):
                status, message, rid = answer(ray_serve.Front(Handle(app, RuntimeError(secret)), settings), upscale)
            assert status == 500 and rid in message and secret not in message
            assert any(rid in r.getMessage() and secret in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
        finally:
            app.server.close()
