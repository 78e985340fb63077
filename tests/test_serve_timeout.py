"""--timeout bounds the work, not only the answer: a real ``sdk serve`` answers 504 at the timeout, its
CPU time stops growing soon after (the engine's work is called off: between windows, and inside a
run on ort-cpu), and the next request is served."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")
import graphs  # noqa: E402
from serving import Server, encode, picture  # noqa: E402

UPSCALE = "/v1/models/srcnn3/upscale"


def cpu_seconds(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def settled_after(process, answered: float, most: float = 15.0) -> float:
    """Seconds from ``answered`` until the server's CPU time grew by under 0.1 s in half a second."""
    before = cpu_seconds(process)
    while time.monotonic() - answered < most:
        time.sleep(0.5)
        now = cpu_seconds(process)
        if now - before < 0.1:
            return time.monotonic() - answered - 0.5
        before = now
    return most


def raw_request(height: int, width: int) -> tuple[bytes, dict]:
    image = np.random.default_rng(1).uniform(0, 255, (1, 3, height, width)).astype("<f4").tobytes()
    inputs = [{"name": "input", "shape": [1, 3, height, width], "datatype": "FP32"}]
    inputs[0]["parameters"] = {"binary_data_size": len(image)}
    head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return head + image, {"inference-header-content-length": str(len(head))}


def timed_out(server, kind: str, **request) -> None:
    """The request is answered 504 within a few seconds, and the server's CPU time levels off soon
    after (the rest of a window, or of one engine node), not when the whole job would have ended."""
    process = psutil.Process(server.proc.pid)
    started = time.monotonic()
    response = server.client.post(**request, timeout=120)
    answered = time.monotonic()
    assert response.status_code == 504, (kind, response.status_code, response.text[:300])
    assert "--timeout" in response.json()["error"] and response.headers["x-request-id"]
    assert answered - started < 6, (kind, answered - started)
    settled = settled_after(process, answered)
    print(f"{kind}: answered after {answered - started:.2f} s, CPU levelled off {settled:.2f} s after the answer")
    assert settled < 2.5, (kind, settled)


def test_an_image_in_windows_stops_between_windows(tmp_path):
    # 1600x1600 x2 in windows of the default tile: about 10 s of work on the build machine.
    with Server("srcnn3", "--timeout", "1", log_dir=tmp_path) as server:
        body = encode(picture(1600, 1600, seed=4))
        timed_out(server, "windows", url=UPSCALE, params={"scale": 2}, content=body)
        small = server.client.post(UPSCALE, params={"scale": 2}, content=encode(picture(48, 40)))
        assert small.status_code == 200 and small.headers["x-sdk-output-size"] == "80x96"


def test_one_long_engine_run_is_stopped_inside_onnx_runtime(tmp_path):
    # A raw tensor runs as one engine call: 1000 convolutions on 512x512, about 7 s on the build
    # machine, stopped between two of its nodes (RunOptions.terminate).
    path = graphs.save(graphs.deep_model(layers=1000), tmp_path / "deep.onnx")
    with Server(path, "--timeout", "1", log_dir=tmp_path) as server:
        content, headers = raw_request(512, 512)
        timed_out(server, "one engine run", url="/v2/models/deep/infer", content=content, headers=headers)
        content, headers = raw_request(16, 16)
        after = server.client.post("/v2/models/deep/infer", content=content, headers=headers)
        assert after.status_code == 200, after.text[:300]
