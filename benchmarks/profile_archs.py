#!/usr/bin/env python
"""Where an engine spends its time on a community architecture, operator by operator, against sgemm.

    python benchmarks/profile_archs.py --arch rrdb --size 256 --runs 3 \
        --md benchmarks/results/profile_rrdb_256.md

The SDK's optimised graph on a bare session of each engine, set up as its backend sets it up: ONNX
Runtime (ORT_ENABLE_ALL, one intra-op thread per core) with its profiler on (``enable_profiling``:
one event per kernel, the operator and its shapes), and OpenVINO (LATENCY, f32) with its per-layer
counters (``PERF_COUNT``). After a warm-up, each engine's profiled calls alternate with numpy's sgemm
at the fastest of sdk.bench.floor's sizes, so the rate every convolution is held against is measured
under the same conditions. Per operator type: ms per call, share of the call, and for convolutions
and matrix products their FLOPs, GFLOP/s and fraction of the sgemm rate (FLOPs from the kernels'
own shapes for ONNX Runtime, from the graph by node name for OpenVINO, whose layers keep the ONNX
names of the convolutions they fuse). Then ONNX Runtime's convolutions by shape, to see which of
them fall short. Times are the kernels' own: what the profile leaves out (the executor between
kernels, thread wake-ups) is the difference to the call's wall time, shown as its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONVOLUTIONS = ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "Convolution", "GroupConvolution")


def _dims(shapes: list) -> list[list[int]]:
    """ORT's ``input_type_shape``: [{"float": [1, 32, 256, 256]}, ...] -> [[1, 32, 256, 256], ...]."""
    return [next(iter(item.values())) for item in shapes]


def kernel_flops(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> float:
    """FLOPs of one ONNX Runtime kernel from the shapes in its profile event (0 for non-arithmetic ops)."""
    if op in ("Conv", "FusedConv") and len(inputs) >= 2 and outputs:
        return 2.0 * float(np.prod(outputs[0])) * float(np.prod(inputs[1][1:]))
    if op in ("MatMul", "FusedMatMul", "Gemm") and inputs and outputs:
        return 2.0 * float(np.prod(outputs[0])) * inputs[0][-1]
    return 0.0


def ort_profile(graph: bytes, x: np.ndarray, runs: int, sgemm) -> tuple[list[dict], list[float], list[float]]:
    """(kernel events of the profiled calls, each call's wall seconds, the sgemm rates between them)."""
    import onnxruntime as ort

    from sdk.devices import cpu_cores

    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = cpu_cores()
        options.enable_mem_pattern = False  # as backends/onnxruntime.py sets it
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        session.run(None, {"input": x})  # warm-up: its events are left out below
        walls, rates = [], []
        for _ in range(runs):
            rates.append(sgemm())
            started = time.perf_counter()
            session.run(None, {"input": x})
            walls.append(time.perf_counter() - started)
        events = json.loads(Path(session.end_profiling()).read_text())
    calls = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[-runs:]
    kernels = []
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if not any(c["ts"] <= event["ts"] <= c["ts"] + c["dur"] for c in calls):
            continue
        args = event["args"]
        inputs, outputs = _dims(args.get("input_type_shape", [])), _dims(args.get("output_type_shape", []))
        kernels.append(
            {
                "op": args.get("op_name", "?"),
                "name": event["name"][: -len("_kernel_time")],
                "ms": event["dur"] / 1e3 / runs,
                "flops": kernel_flops(args.get("op_name", ""), inputs, outputs) / runs,
                "inputs": inputs,
                "outputs": outputs,
                "weight": 1 / runs,
            }
        )
    return kernels, walls, rates


def openvino_profile(graph: bytes, x: np.ndarray, runs: int, sgemm, flops_by_name: dict) -> tuple:
    """(layer records averaged over the profiled calls, each call's wall seconds, sgemm rates between)."""
    import openvino as ov

    core = ov.Core()
    settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    request = core.compile_model(core.read_model(graph, b""), "CPU", settings).create_infer_request()
    request.infer({"input": x})
    walls, rates = [], []
    totals: dict[tuple, float] = defaultdict(float)
    for _ in range(runs):
        rates.append(sgemm())
        started = time.perf_counter()
        request.infer({"input": x})
        walls.append(time.perf_counter() - started)
        for info in request.get_profiling_info():
            if str(info.status).endswith("EXECUTED") and "NOT" not in str(info.status):
                totals[(info.node_name, info.node_type, info.exec_type)] += info.real_time.total_seconds()
    # A fused layer keeps the name of the convolution it was built from, with a suffix of its own.
    layers = [
        {
            "op": op,
            "name": name,
            "exec": kind,
            "ms": seconds * 1e3 / runs,
            "flops": flops_by_name.get(name.split("/WithoutBiases")[0], 0.0),
            "weight": 1,  # one record per layer, its times summed over the calls
        }
        for (name, op, kind), seconds in totals.items()
    ]
    return layers, walls, rates


def by_operator(records: list[dict], wall_ms: float, rate: float) -> list[str]:
    """A Markdown table of time per operator type, FLOP rates for the arithmetic ones."""
    groups: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "flops": 0.0, "count": 0})
    for r in records:
        key = f"{r['op']} ({r['exec']})" if r.get("exec") and r["op"] in CONVOLUTIONS else r["op"]
        groups[key]["ms"] += r["ms"]
        groups[key]["flops"] += r["flops"]
        groups[key]["count"] += r["weight"]
    kernels = sum(g["ms"] for g in groups.values())
    lines = [
        "| operator | layers | ms per call | share of the call | GFLOP | GFLOP/s | of sgemm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op, g in sorted(groups.items(), key=lambda item: -item[1]["ms"]):
        if g["ms"] < 0.05:
            continue
        speed = g["flops"] / (g["ms"] / 1e3) / 1e9 if g["flops"] and g["ms"] else None
        lines.append(
            f"| {op} | {g['count']:.0f} | {g['ms']:,.1f} | {g['ms'] / wall_ms:.1%} | "
            + (f"{g['flops'] / 1e9:.1f} | {speed:.0f} | {speed * 1e9 / rate:.2f} |" if speed else "- | - | - |")
        )
    lines.append(
        f"| (outside the kernels: executor, waits) | - | {wall_ms - kernels:,.1f} | {(wall_ms - kernels) / wall_ms:.1%} "
        "| - | - | - |"
    )
    return lines


def conv_shapes(kernels: list[dict], rate: float) -> list[str]:
    """ONNX Runtime's convolutions grouped by shape: input channels, output channels, kernel, map size."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"ms": 0.0, "flops": 0.0, "count": 0})
    for k in kernels:
        if not k["flops"] or k["op"] not in ("Conv", "FusedConv") or len(k["inputs"]) < 2:
            continue
        w, out = k["inputs"][1], k["outputs"][0]
        key = (w[1], w[0], f"{w[2]}x{w[3]}", f"{out[2]}x{out[3]}", k["op"])
        groups[key]["ms"] += k["ms"]
        groups[key]["flops"] += k["flops"]
        groups[key]["count"] += k["weight"]
    lines = [
        "| in -> out channels (as the kernel sees them) | kernel | output map | op | layers | ms per call | "
        "GFLOP/s | of sgemm |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for (cin, cout, kernel, size, op), g in sorted(groups.items(), key=lambda item: -item[1]["ms"]):
        speed = g["flops"] / (g["ms"] / 1e3) / 1e9
        lines.append(
            f"| {cin} -> {cout} | {kernel} | {size} | {op} | {g['count']:.0f} | {g['ms']:,.1f} | {speed:.0f} | "
            f"{speed * 1e9 / rate:.2f} |"
        )
    return lines


def profile(arch: str, size: int, runs: int, engines: list[str]) -> list[str]:
    import onnx

    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.export import exported
    from sdk.bench.floor import fastest_side, sgemm_rate
    from sdk.bench.flops import node_flops
    from sdk.model import Model
    from sdk.optimize.graph import load_with_weights
    from sdk.optimize.passes import optimise

    spec = ARCHS[arch]
    optimised = optimise(load_with_weights(exported(arch)))[0]
    graph = optimised.SerializeToString()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{arch}.onnx"
        onnx.save(optimised, str(path))
        flops_by_name = node_flops(Model(str(path)), size, 1, spec.scale, spec.declared()) or {}
    total = sum(flops_by_name.values())
    side, probed = fastest_side(total)
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    lines = [f"### {spec.title}, {size}x{size}", ""]
    for engine in engines:
        if engine == "ort":
            records, walls, rates = ort_profile(graph, x, runs, lambda: sgemm_rate(side, 1))
            name = "ONNX Runtime (kernel times from its profiler)"
        else:
            try:
                records, walls, rates = openvino_profile(graph, x, runs, lambda: sgemm_rate(side, 1), flops_by_name)
            except ImportError:
                lines += ["OpenVINO is not installed: pip install examples/sdk-openvino", ""]
                continue
            name = "OpenVINO (per-layer counters, PERF_COUNT)"
        # The mean call: the kernels' times are summed over the same calls.
        rate, wall_ms = max(rates), float(np.mean(walls)) * 1e3
        lines += [
            f"#### {name}",
            "",
            f"Profiled calls: mean {wall_ms:,.1f} ms (min {min(walls) * 1e3:,.1f}); the graph's "
            f"{total / 1e9:.1f} GFLOP at the best sgemm rate between them ({rate / 1e9:.0f} GFLOP/s, "
            f"{side}x{side}, the fastest of {probed}) take {total / rate * 1e3:,.1f} ms: the call's fastest "
            f"run is {total / rate / min(walls):.2f} of that floor.",
            "",
            *by_operator(records, wall_ms, rate),
            "",
        ]
        if engine == "ort":
            lines += ["ONNX Runtime's convolutions by shape:", "", *conv_shapes(records, rate), ""]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["rrdb"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", nargs="+", default=["ort", "openvino"], choices=["ort", "openvino"])
    parser.add_argument("--md", help="write the tables as Markdown")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for the test suite (Compact at 16x16)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.size, args.runs = ["compact"], 16, 1
    lines = [
        f"{args.runs} profiled calls per engine after a warm-up, batch 1; load average at the start "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.",
        "",
    ]
    for arch in args.arch:
        lines += profile(arch, args.size, args.runs, args.engines)
    text = "\n".join(lines)
    print(text)
    if args.md:
        from sdk.files import atomic_write

        atomic_write(args.md, "# Where the engines spend their time, per operator\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
