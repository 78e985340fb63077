#!/usr/bin/env python
"""Reduced precision on the community's architectures: its speed against fp32 and the picture it costs.

    python benchmarks/precision_archs.py --arch compact span rrdb swinir --size 256 --runs 5 \
        --picture-range span --md benchmarks/results/precision_archs_avx512.md

Four bare engine sessions per architecture, on the SDK's optimised graph and fed the same photo (the
benchmark's first, ``sdk.bench.inputs``): ONNX Runtime fp32, ONNX Runtime on the model that
``precision="int8"`` loads (``backends/ort_int8.py``: the SDK's own quantisation and calibration,
through the architecture's declared pipeline), OpenVINO f32 and OpenVINO bf16 (its inference
precision hint, as ``precision="bf16"`` sets it). They take turns call by call, each timed in wall
clock and in the process's CPU time (spinning off in ONNX Runtime), so that on a shared machine the
CPU-time ratios are the ones to read. Pictures: the uint8 output of each against ONNX Runtime fp32
(which equals PyTorch's within one grey level, benchmarks/compare.py), as PSNR and max abs diff.

The architectures carry random weights, and a random net's output is not a picture: the share of the
fp32 output outside 0..1 is printed beside it. Where most of it is (SPAN: the output spans about
+-40), an error that is small against the net's own range is tens of grey levels on the few pixels
left. ``--picture-range`` scales the last convolution so that the fp32 output lies in 0..1 as a
trained net's does (its share of the output given a photo's spread, 0.25, and the output a photo's
mean, 0.45) and measures again: what the precision costs a net whose output is a picture.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCRATCH = ROOT / "build" / "precision"
PICTURE_SPREAD = 0.25  # the standard deviation of a photo's values in 0..1, roughly
PICTURE_MIDDLE = 0.45


def _pixels(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


def _in_picture_range(proto, x: np.ndarray):
    """The graph with its last Conv (the last one not fed by the input itself: Compact's nearest
    upscale is a Conv after sdk.optimize) scaled so that its share of the output on ``x`` has a
    photo's spread, and its bias shifted so that the output's mean is a photo's. The output is affine
    in that Conv's weights and bias (only DepthToSpace and Adds follow it in these nets)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    def run(model) -> np.ndarray:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x})[0]

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    last = [n for n in model.graph.node if n.op_type == "Conv" and n.input[0] != "input"][-1]
    weights = {t.name: t for t in model.graph.initializer}
    original = {name: numpy_helper.to_array(weights[name]) for name in last.input[1:3]}

    def set_conv(k: float, shift: float) -> None:
        for name, value in original.items():
            shifted = value * k + (shift if name == last.input[2] else 0.0)
            weights[name].CopyFrom(numpy_helper.from_array(shifted.astype(np.float32), name))

    y = run(model)
    set_conv(0.0, 0.0)
    base = run(model)
    k = PICTURE_SPREAD / float(np.std(y - base))
    set_conv(k, 0.0)
    set_conv(k, PICTURE_MIDDLE - float(np.mean(run(model))))
    return model


def sessions_for(arch: str, x: np.ndarray, picture_range: bool) -> dict:
    """name -> a call returning the output, for the four variants (OpenVINO's where it is installed)."""
    import onnx
    import onnxruntime as ort

    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.export import exported
    from deploy_sdk_backends.ort_int8 import int8_model
    from sdk.devices import cpu_cores
    from sdk.model import Model
    from sdk.optimize.graph import load_with_weights
    from sdk.optimize.passes import optimise
    from sdk.resolution import check_declared

    proto = optimise(load_with_weights(exported(arch)))[0]
    if picture_range:
        proto = _in_picture_range(proto, x)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / f"{arch}{'-picture' if picture_range else ''}-{os.getpid()}.onnx"
    onnx.save(proto, str(path))
    model = Model(path)
    model.declared = check_declared(ARCHS[arch].declared())
    quantised = int8_model(model, ort, cache_dir=SCRATCH / "cache")
    feeds = {"input": x}

    def onnxruntime(target):
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_cores()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, feeds)[0]

    calls = {"ort fp32": onnxruntime(path), "ort int8": onnxruntime(quantised.path)}
    try:
        import openvino as ov
    except ImportError:
        print("openvino is not installed: its variants are skipped (pip install examples/sdk-openvino)")
    else:
        core = ov.Core()
        for precision in ("f32", "bf16"):
            settings = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
            request = core.compile_model(core.read_model(str(path)), "CPU", settings).create_infer_request()
            calls[f"openvino {precision}"] = lambda r=request: np.array(r.infer(feeds)[0], copy=True)
    path.unlink()
    return calls


def table(arch: str, size: int, runs: int, warmup: int, picture_range: bool) -> list[str]:
    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.turns import take_turns
    from sdk.bench.inputs import benchmark_images
    from sdk.bench.metrics import compare_images

    photo = benchmark_images(size, 1)[0]
    x = np.ascontiguousarray((photo.astype(np.float32) / 255).transpose(2, 0, 1)[None])
    calls = sessions_for(arch, x, picture_range)
    outputs = {name: call() for name, call in calls.items()}
    reference = outputs["ort fp32"]
    outside = float(np.mean((reference < 0) | (reference > 1)))
    wall, cpu = take_turns(calls, runs, warmup)
    title = ARCHS[arch].title + (", last conv scaled to the picture range" if picture_range else "")
    lines = [
        f"### {title}",
        "",
        f"fp32 output outside 0..1: {outside:.0%} of its values.",
        "",
        "| variant | wall p50 ms | CPU p50 ms | vs the engine's fp32 (wall) | vs the engine's fp32 (CPU) "
        "| PSNR vs ort fp32 | max abs diff (grey levels) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in calls:
        base = "openvino f32" if name.startswith("openvino") else "ort fp32"
        w, c = np.median(wall[name]) * 1e3, np.median(cpu[name]) * 1e3
        bw, bc = np.median(wall[base]) * 1e3, np.median(cpu[base]) * 1e3
        diff, psnr = compare_images(_pixels(reference), _pixels(outputs[name]))
        shown = "identical" if psnr is None else f"{psnr:.1f} dB"
        lines.append(f"| {name} | {w:,.1f} | {c:,.1f} | {bw / w:.2f}x | {bc / c:.2f}x | {shown} | {diff:g} |")
    return [*lines, ""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["compact", "span", "rrdb", "swinir"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--picture-range", nargs="*", default=[], metavar="ARCH", help="also these nets scaled to output 0..1"
    )
    parser.add_argument("--md", help="write the tables as Markdown")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run for the test suite (Compact at 16x16, scaled and not)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.size, args.runs, args.warmup = ["compact"], 16, 1, 0
        args.picture_range = ["compact"]  # the scaling runs too
    load = os.getloadavg()
    lines = [
        f"{args.size}x{args.size}, batch 1, {args.runs} interleaved calls per variant after {args.warmup} "
        f"warm-up; load average at the start {load[0]:.2f}. Ratios: the same engine in fp32 over the variant; "
        "above 1 is faster. Pictures: uint8, against ONNX Runtime fp32 on the same graph.",
        "",
    ]
    for arch in args.arch:
        lines += table(arch, args.size, args.runs, args.warmup, False)
        if arch in args.picture_range:
            lines += table(arch, args.size, args.runs, args.warmup, True)
    text = "\n".join(lines)
    print(text)
    if args.md:
        from sdk.files import atomic_write

        atomic_write(args.md, "# Reduced precision on the community's architectures, measured\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
