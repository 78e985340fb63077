"""OpenVINO vs ort-cpu at 256 x 256 -> 768 x 768 (srcnn3, scale 3): measured and printed, not asserted
(timings on shared CI machines are too noisy to gate on). The figures justify the backend's priority."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from sdk import Predictor

REPEATS = int(os.environ.get("SDK_OPENVINO_LATENCY_REPEATS", "5"))


def _median_seconds(call, repeats: int = REPEATS) -> float:
    call()  # the first call allocates buffers (and, for OpenVINO, shapes the dynamic graph)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_latency_openvino_vs_ort_cpu(srcnn3_path, capsys):
    image = np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    rows = []
    for backend in ("ort-cpu", "openvino"):
        with Predictor(srcnn3_path, backend=backend, device="cpu") as predictor:
            feeds = predictor.pipeline.feeds(predictor.pipeline.prepare(image[None], 3).tensor, 3)
            engine = _median_seconds(lambda: predictor.run(feeds))
            whole = _median_seconds(lambda: predictor(image, scale=3))
            rows.append((backend, engine, whole))
    ort_engine = rows[0][1]
    with capsys.disabled():
        print(f"\n{srcnn3_path.name} 256x256 -> 768x768, batch 1, median of {REPEATS} ({os.cpu_count()} CPUs visible)")
        print(f"  {'backend':10} {'engine s':>9} {'image->image s':>15} {'vs ort-cpu':>11}")
        for backend, engine, whole in rows:
            print(f"  {backend:10} {engine:9.3f} {whole:15.3f} {ort_engine / engine:10.2f}x")
    assert all(engine > 0 for _, engine, _ in rows)
