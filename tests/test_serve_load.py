"""Batching across requests, back-pressure, timeouts, hang-ups and SIGTERM on a real ``sdk serve``."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from serving import Server, decode, encode, max_diff, picture  # noqa: E402

SIZES = [(70, 90), (64, 64), (100, 75), (130, 66), (80, 120), (96, 96), (66, 140), (110, 85)]


def post_all(server, payloads, scale=2, concurrency=32, timeout=120):
    """POST every payload at once from ``concurrency`` threads; returns the responses in order."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": f"Bearer {server.token}"} if server.token else {}
    with httpx.Client(base_url=server.url, timeout=timeout, limits=limits, headers=headers) as client:
        barrier = threading.Barrier(min(concurrency, len(payloads)))

        def one(data):
            try:
                barrier.wait(10)
            except threading.BrokenBarrierError:
                pass
            return client.post("/v1/models/srcnn3/upscale", params={"scale": scale}, content=data)

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, payloads))


def test_concurrent_requests_of_mixed_sizes_share_engine_calls(tmp_path):
    distinct = [encode(picture(*size, seed=i)) for i, size in enumerate(SIZES)]
    payloads = [distinct[i % len(distinct)] for i in range(32)]
    with Server("srcnn3", "--tile", "64", "--max-batch", "16", "--max-delay-ms", "20", log_dir=tmp_path) as server:
        alone = [
            decode(server.client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=p).content)
            for p in distinct
        ]
        singles = [alone[i % len(alone)] for i in range(32)]
        calls_before = server.metric("sdk_serve_batch_size_count")
        responses = post_all(server, payloads)
        calls = server.metric("sdk_serve_batch_size_count") - calls_before
        tiles = server.metric("sdk_serve_batch_size_sum")
    assert [r.status_code for r in responses] == [200] * 32
    for single, response in zip(singles, responses):
        assert max_diff(decode(response.content), single) == 0
    assert calls < 32, f"32 concurrent requests took {calls} engine calls"
    assert tiles > 0


def test_overload_gets_503_with_retry_after_and_loses_no_accepted_request(tmp_path):
    from sdk import Predictor

    image = picture(96, 96, seed=9)
    with Predictor("srcnn3", backend="ort-cpu") as p:
        expected = p(image, scale=2)
    with Server("srcnn3", "--tile", "64", "--max-queue", "3", log_dir=tmp_path) as server:
        responses = post_all(server, [encode(image)] * 24, concurrency=24)
        rejected_metric = server.metric("sdk_serve_rejected_total")
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy, "24 requests at once on --max-queue 3 were all admitted"
    assert all(int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"] for r in busy)
    accepted = [r for r in responses if r.status_code == 200]
    assert len(accepted) >= 3
    for r in accepted:
        assert max_diff(decode(r.content), expected) <= 1
    assert rejected_metric == len(busy)


def test_timeout_is_504_and_a_hang_up_frees_its_place(tmp_path):
    big = encode(picture(800, 800, seed=1))  # ~200 windows: many seconds of engine time
    small = encode(picture(16, 16))
    # The timeout leaves room for the small request below to wait out the chunk already on the engine.
    with Server("srcnn3", "--tile", "64", "--max-queue", "1", "--timeout", "1.5", log_dir=tmp_path) as server:
        slow = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 3}, content=big)
        assert slow.status_code == 504 and "--timeout" in slow.json()["error"]
        # A client that gives up mid-request: its place (the only one) must come free.
        with httpx.Client(base_url=server.url, timeout=0.5) as impatient, pytest.raises(httpx.TimeoutException):
            impatient.post("/v1/models/srcnn3/upscale", params={"scale": 3}, content=big)
        deadline = time.monotonic() + 5
        while server.metric("sdk_serve_requests_in_flight") > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        after = server.client.post("/v1/models/srcnn3/upscale", params={"scale": 2}, content=small)
        assert after.status_code == 200, after.text


def test_sigterm_under_load_finishes_in_flight_requests_and_exits_0(tmp_path):
    images = [picture(100, 100, seed=i) for i in range(8)]
    server = Server("srcnn3", "--tile", "64", "--max-batch", "4", "--grace", "30", log_dir=tmp_path).__enter__()
    try:
        results = {}

        def fire():
            results["responses"] = post_all(server, [encode(i) for i in images], scale=3, concurrency=8)

        thread = threading.Thread(target=fire)
        thread.start()
        deadline = time.monotonic() + 20
        while server.metric("sdk_serve_requests_in_flight") < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.metric("sdk_serve_requests_in_flight") == 8
        server.proc.send_signal(signal.SIGTERM)
        thread.join(60)
        code = server.proc.wait(60)
    finally:
        server.stop()
    assert code == 0, server.log()
    responses = results["responses"]
    assert [r.status_code for r in responses] == [200] * 8
    from sdk import Predictor

    with Predictor("srcnn3", backend="ort-cpu") as p:
        for image, response in zip(images, responses):
            assert max_diff(decode(response.content), p(image, scale=3)) <= 1
