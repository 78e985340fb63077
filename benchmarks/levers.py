#!/usr/bin/env python
"""Engine settings and graph shapes measured side by side: which speed levers win on this machine.

    python benchmarks/levers.py --size 256 --scale 3 --runs 10 --md benchmarks/results/levers_srcnn3_x3.md

Every variant is a session on srcnn3 fed the same tensor; variants take turns call by call (rotating
order), so noise on a shared machine hits them alike and the ratios hold. Engine libraries are used
directly here: this script measures engines, the SDK's benchmark (``sdk bench``) measures the SDK.

Variants: ONNX Runtime as the SDK sets it up, without the optimisation pass, without its narrow
convolution split (the Resize rewrite alone), and with other session settings (no thread spinning,
no memory arena, no memory pattern, no NCHWc layout, one thread); the "folding" graph shapes (Resize
folded into the first convolution: one 7x7 conv with s*s*64 outputs on the small image, then
DepthToSpace, or with conv2 also on the small image as a grouped conv; random weights - they measure
the shape's speed, not its picture); OpenVINO with
LATENCY / THROUGHPUT hints, explicit streams and threads, bf16, and without the narrow split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def folded_graph(size_channels: int, scale: int, late: bool = False):
    """srcnn3's shape with the Resize folded into conv1: conv 7x7 3 -> s*s*64 on the low-res grid,
    DepthToSpace, ReLU, conv 1x1 64->32, ReLU, conv 5x5 32->3, plus the (polyphase) upsampled residual.

    ``late``: stay on the low-res grid one layer longer. ReLU and a 1x1 conv act on each pixel alone,
    so they commute with DepthToSpace: conv2 becomes a grouped 1x1 conv (one group per phase,
    s*s*64 -> s*s*32) and only its 32-channel result is shuffled onto the big grid (DCR order: the
    phases are the outer channel index, so each group is one phase)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.01).astype(np.float32), name)

    s2 = scale * scale
    conv2_out = s2 * 32 if late else 32
    inits = [
        weight("w1", s2 * 64, 3, 7, 7),
        weight("b1", s2 * 64),
        weight("w2", conv2_out, 64, 1, 1),
        weight("b2", conv2_out),
        weight("w3", 3, 32, 5, 5),
        weight("b3", 3),
        weight("wu", 3 * s2, 1, 5, 5),
        numpy_helper.from_array(np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64), "pads"),
    ]
    if late:
        body = [
            helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[3, 3, 3, 3]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], group=s2),
            helper.make_node("Relu", ["c2"], ["r2d"]),
            helper.make_node("DepthToSpace", ["r2d"], ["r2"], blocksize=scale, mode="DCR"),
        ]
    else:
        body = [
            helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[3, 3, 3, 3]),
            helper.make_node("DepthToSpace", ["c1"], ["d1"], blocksize=scale, mode="CRD"),
            helper.make_node("Relu", ["d1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"]),
            helper.make_node("Relu", ["c2"], ["r2"]),
        ]
    nodes = body + [
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[2, 2, 2, 2]),
        helper.make_node("Pad", ["input", "pads"], ["padded"], mode="edge"),
        helper.make_node("Conv", ["padded", "wu"], ["u"], group=3),
        helper.make_node("DepthToSpace", ["u"], ["up"], blocksize=scale, mode="CRD"),
        helper.make_node("Add", ["up", "c3"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "folded",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "H", "W"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    from sdk.optimize.passes import optimise

    return optimise(model)[0]  # the narrow conv3 split, as the SDK's graph has it


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    parser.add_argument("--md", help="write the table as Markdown")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for the test suite (16x16, one call each)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.runs, args.warmup = 16, 1, 0

    import onnxruntime as ort

    from sdk.devices import cpu_cores
    from sdk.model import Model
    from sdk.optimize import optimized_model
    from sdk.optimize.graph import load_with_weights, specialise
    from sdk.optimize.passes import optimise

    model = Model("srcnn3")
    factor = np.array([1, 1, args.scale, args.scale], np.float32)
    optimized = optimized_model(model, {"factor": factor})
    resize_only = optimise(specialise(load_with_weights(model.path), {"factor": factor}), split_narrow=False)[0]
    resize_only = resize_only.SerializeToString()
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, args.size, args.size)).astype(np.float32)
    threads = cpu_cores()

    def ort_variant(path, feeds, **settings):
        options = ort.SessionOptions()
        options.graph_optimization_level = settings.pop("level", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        options.intra_op_num_threads = settings.pop("threads", threads)
        for key, value in settings.pop("config", {}).items():
            options.add_session_config_entry(key, value)
        for key, value in settings.items():
            setattr(options, key, value)
        session = ort.InferenceSession(
            path if isinstance(path, bytes) else str(path), options, providers=["CPUExecutionProvider"]
        )
        return lambda: session.run(None, feeds)

    fast, slow = {"input": x}, {"input": x, "factor": factor}
    variants = {
        "ort: as the SDK sets it up (optimised graph)": lambda: ort_variant(optimized.path, fast),
        "ort: original graph (optimize=False)": lambda: ort_variant(model.path, slow),
        "ort: without the narrow conv split (Resize rewrite only)": lambda: ort_variant(resize_only, fast),
        "ort: no thread spinning": lambda: ort_variant(
            optimized.path, fast, config={"session.intra_op.allow_spinning": "0"}
        ),
        "ort: no memory arena": lambda: ort_variant(optimized.path, fast, enable_cpu_mem_arena=False),
        "ort: no memory pattern": lambda: ort_variant(optimized.path, fast, enable_mem_pattern=False),
        "ort: no NCHWc layout (ORT_ENABLE_EXTENDED)": lambda: ort_variant(
            optimized.path, fast, level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        ),
        "ort: 1 intra-op thread": lambda: ort_variant(optimized.path, fast, threads=1),
        "ort: folded conv1 shape (random weights)": lambda: ort_variant(
            folded_graph(3, args.scale).SerializeToString(), fast
        ),
        "ort: folded, conv2 on the low-res grid too (random weights)": lambda: ort_variant(
            folded_graph(3, args.scale, late=True).SerializeToString(), fast
        ),
    }
    try:
        import openvino as ov

        core = ov.Core()

        def ov_variant(source, feeds, **config):
            network = core.read_model(str(source)) if not isinstance(source, bytes) else core.read_model(source, b"")
            compiled = core.compile_model(
                network, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", **config}
            )
            request = compiled.create_infer_request()
            return lambda: request.infer(feeds, share_inputs=True)

        variants.update(
            {
                "openvino: as the plugin sets it up (LATENCY, f32, optimised graph)": lambda: ov_variant(
                    optimized.path, fast
                ),
                "openvino: original graph": lambda: ov_variant(model.path, slow),
                "openvino: without the narrow conv split (Resize rewrite only)": lambda: ov_variant(resize_only, fast),
                "openvino: THROUGHPUT hint": lambda: ov_variant(optimized.path, fast, PERFORMANCE_HINT="THROUGHPUT"),
                "openvino: 1 stream, 2 threads": lambda: ov_variant(
                    optimized.path, fast, NUM_STREAMS="1", INFERENCE_NUM_THREADS=threads
                ),
                "openvino: folded conv1 shape (random weights)": lambda: ov_variant(
                    folded_graph(3, args.scale).SerializeToString(), fast
                ),
                "openvino: folded, conv2 on the low-res grid too (random weights)": lambda: ov_variant(
                    folded_graph(3, args.scale, late=True).SerializeToString(), fast
                ),
                "openvino: bf16 (opt-in precision)": lambda: ov_variant(
                    optimized.path, fast, INFERENCE_PRECISION_HINT="bf16"
                ),
            }
        )
    except ImportError:
        print("openvino is not installed: its variants are skipped (pip install examples/sdk-openvino)")
    if args.only:
        variants = {k: v for k, v in variants.items() if any(o in k for o in args.only)}
    from benchmarks.devkit.turns import take_turns

    calls = {name: make() for name, make in variants.items()}
    times, _ = take_turns(calls, args.runs, args.warmup)  # rotating order, 0.1 s between calls
    names = list(calls)
    base_ort = np.median(times[names[0]])
    base_ov = next((np.median(times[n]) for n in names if n.startswith("openvino: as")), None)
    lines = [
        f"srcnn3 x{args.scale}, {args.size}x{args.size}, batch 1, {args.runs} interleaved calls per variant; "
        f"{threads} intra-op threads",
        "",
        "| variant | p50 ms | vs its engine's SDK setting |",
        "|---|---:|---:|",
    ]
    for name in names:
        p50 = np.median(times[name]) * 1e3
        base = base_ov if name.startswith("openvino") else base_ort
        lines.append(f"| {name} | {p50:.1f} | {base * 1e3 / p50:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        from sdk.files import atomic_write

        atomic_write(args.md, "# Speed levers, measured\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
