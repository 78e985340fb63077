#!/usr/bin/env python
"""Speed levers on the community's architectures, one by one, on bare engine sessions side by side.

    python benchmarks/levers_archs.py --arch compact span rrdb swinir --size 128 --runs 6 \
        --md benchmarks/results/levers_archs.md

Every variant of one architecture is a bare session fed the same tensor; the variants take turns
call by call (rotating order, a pause between calls so spinning thread pools go quiet). Each call is
timed twice: wall clock, and the process's CPU time. On a machine shared with other jobs the wall
clock measures the queue for the cores as much as the engine; CPU time counts the work the engine did
(spinning is turned off in the ONNX Runtime variants so that waiting is not counted as work), so its
ratios are the ones to read there. Engine libraries are used directly: this measures engines, not the
SDK (``benchmarks/compare.py`` does that).

Variants: ONNX Runtime on the original export, on the SDK's optimised graph (sdk.optimize), on the
optimised graph without the Mul -> BatchNormalization rewrite, with PReLU written as BatchNormalizations
around a Relu (the NCHWc-friendly form, measured and rejected), without its NCHWc layout
(ORT_ENABLE_EXTENDED), with one thread, with denormals as zero; OpenVINO (LATENCY, f32) on the
original and the optimised graph, THROUGHPUT, bf16, one stream on all cores with its threads pinned,
denormals flushed; MNN (sdk-mnn's conversion) when installed. Outputs are compared with the
original graph on ONNX Runtime (max abs diff, in the model's output units).
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


def prelu_as_batchnorms(proto):
    """PRelu(y, a) -> BN(y; a) + BN(Relu(y); 1 - a): the same function in operators ONNX Runtime's
    NCHWc layout keeps (it drops every PRelu back to NCHW)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        if node.op_type != "PRelu" or node.input[1] not in weights:
            continue
        slopes = weights[node.input[1]].reshape(-1).astype(np.float32)
        prefix = f"lever{index}_"
        for name, value in (("a", slopes), ("b", 1 - slopes), ("z", 0 * slopes), ("o", 0 * slopes + 1)):
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), prefix + name))
        y, out = node.input[0], node.output[0]
        new = [
            helper.make_node("Relu", [y], [prefix + "relu"]),
            helper.make_node("BatchNormalization", [y, *(prefix + n for n in "azzo")], [prefix + "ay"], epsilon=0.0),
            helper.make_node(
                "BatchNormalization", [prefix + "relu", *(prefix + n for n in "bzzo")], [prefix + "br"], epsilon=0.0
            ),
            helper.make_node("Add", [prefix + "ay", prefix + "br"], [out]),
        ]
        del graph.node[index]
        for offset, item in enumerate(new):
            graph.node.insert(index + offset, item)
    return model


def variants_for(arch: str, x: np.ndarray) -> dict:
    import onnxruntime as ort

    from benchmarks.devkit.export import exported
    from sdk.devices import cpu_cores
    from sdk.optimize.graph import load_with_weights
    from sdk.optimize.passes import optimise

    path = exported(arch)
    original = load_with_weights(path)
    optimised, _ = optimise(original)
    graphs = {"original": original.SerializeToString(), "optimised": optimised.SerializeToString()}
    if any(n.op_type in ("Mul", "Add", "Sub") for n in original.graph.node):
        graphs["optimised, Mul/Add/Sub by constants left as they are"] = optimise(original, scales=False)[
            0
        ].SerializeToString()
    if any(n.op_type == "PRelu" for n in original.graph.node):
        graphs["optimised, PReLU as BatchNormalizations"] = prelu_as_batchnorms(optimised).SerializeToString()
    threads = cpu_cores()
    feeds = {"input": x}

    def onnxruntime(graph, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, intra=threads, config=None):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = intra
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for key, value in (config or {}).items():
            options.add_session_config_entry(key, value)
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, feeds)[0]

    variants = {f"ort: {name}": (lambda g=graph: onnxruntime(g)) for name, graph in graphs.items()}
    variants["ort: optimised, no NCHWc (ORT_ENABLE_EXTENDED)"] = lambda: onnxruntime(
        graphs["optimised"], ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    )
    variants["ort: optimised, 1 thread"] = lambda: onnxruntime(graphs["optimised"], intra=1)
    variants["ort: optimised, denormals as zero"] = lambda: onnxruntime(
        graphs["optimised"], config={"session.set_denormal_as_zero": "1"}
    )
    try:
        import openvino as ov

        core = ov.Core()

        def openvino(graph, **config):
            settings = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", **config}
            request = core.compile_model(core.read_model(graph, b""), "CPU", settings).create_infer_request()
            return lambda: np.array(request.infer(feeds)[0], copy=True)

        variants["openvino: original (LATENCY, f32)"] = lambda: openvino(graphs["original"])
        variants["openvino: optimised (LATENCY, f32)"] = lambda: openvino(graphs["optimised"])
        variants["openvino: optimised, THROUGHPUT"] = lambda: openvino(
            graphs["optimised"], PERFORMANCE_HINT="THROUGHPUT"
        )
        variants["openvino: optimised, bf16"] = lambda: openvino(graphs["optimised"], INFERENCE_PRECISION_HINT="bf16")
        variants["openvino: optimised, 1 stream x all cores, pinned"] = lambda: openvino(
            graphs["optimised"], NUM_STREAMS=1, INFERENCE_NUM_THREADS=threads, ENABLE_CPU_PINNING=True
        )
        variants["openvino: optimised, denormals flushed"] = lambda: openvino(
            graphs["optimised"], CPU_DENORMALS_OPTIMIZATION=True
        )
    except ImportError:
        print("openvino is not installed: its variants are skipped (pip install examples/sdk-openvino)")
    try:
        from sdk_mnn.backend import MnnSession, import_mnn, session_config

        from sdk.model import Model

        def mnn(graph):
            scratch = ROOT / "build" / "levers" / f"{arch}-{len(graph)}.onnx"
            scratch.parent.mkdir(parents=True, exist_ok=True)
            scratch.write_bytes(graph)
            session = MnnSession(import_mnn(), Model(scratch), session_config({}))
            return lambda: session.run(feeds)["output"]

        variants["mnn: optimised (fp32)"] = lambda: mnn(graphs["optimised"])
    except ImportError:
        print("sdk-mnn is not installed: its variant is skipped (pip install examples/sdk-mnn)")
    return variants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["compact", "span", "rrdb", "swinir"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="variant names containing any of these")
    parser.add_argument("--md", help="write the tables as Markdown")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run for the test suite (Compact at 16x16, one call each)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.size, args.runs, args.warmup = ["compact"], 16, 1, 0
    from benchmarks.devkit.archs import ARCHS
    from benchmarks.devkit.turns import take_turns

    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    load = os.getloadavg()
    lines = [
        f"{args.size}x{args.size}, batch 1, {args.runs} interleaved calls per variant after {args.warmup} warm-up; "
        f"load average at the start {load[0]:.2f}. Ratios: the engine's own default setting (`ort: optimised`, "
        "`openvino: optimised`) over the variant, in wall time and in CPU time; above 1 is faster.",
        "",
    ]
    for arch in args.arch:
        makers = variants_for(arch, x)
        if args.only:
            kept = ("ort: original", "ort: optimised")
            makers = {k: v for k, v in makers.items() if k in kept or any(o in k for o in args.only)}
        calls = {name: make() for name, make in makers.items()}
        reference = calls["ort: original"]()
        diffs = {name: float(np.abs(call() - reference).max()) for name, call in calls.items()}
        wall, cpu = take_turns(calls, args.runs, args.warmup)
        lines += [
            f"### {ARCHS[arch].title}",
            "",
            "| variant | wall p50 ms | CPU p50 ms | vs engine default (wall) | vs engine default (CPU) | max abs diff |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in calls:
            base = "openvino: optimised (LATENCY, f32)" if name.startswith("openvino") else "ort: optimised"
            base = base if base in calls else "ort: optimised"
            w, c = np.median(wall[name]) * 1e3, np.median(cpu[name]) * 1e3
            bw, bc = np.median(wall[base]) * 1e3, np.median(cpu[base]) * 1e3
            lines.append(f"| {name} | {w:,.1f} | {c:,.1f} | {bw / w:.2f}x | {bc / c:.2f}x | {diffs[name]:.2g} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.md:
        from sdk.files import atomic_write

        atomic_write(args.md, "# Speed levers on the community's architectures, measured\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
