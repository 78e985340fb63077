"""The memory-bound floor of a model on a GPU: the bytes its activations must move, at the memory's rate.

SRCNN-like nets do few operations per byte (a 1x1 convolution over 64 channels is 64 multiply-adds per
4-byte value read), so on a GPU whose arithmetic is as fast as an H200's they are bound by memory
traffic, not by FLOPs. The floor counts the least traffic any engine can have: the image read once,
the output written once, and every intermediate activation written once and read once, with an
activation function (ReLU, PReLU, ...) fused into the node before it, as every GPU engine does. Weights
are read once. The figure is then bytes / bandwidth.

The bandwidth: 4.8 TB/s, the H200's HBM3e by NVIDIA's H200 datasheet; the device-to-device copy rate
measured in the same run (bytes read + written per second, through PyTorch) is given beside it, since a
real kernel reaches the copy rate at best (about 4.3 TB/s where it was measured before on this kind).
For srcnn3 512² -> 1536² fp32 at batch 1 this is about 1.9 GB, so about 0.40 ms at 4.8 TB/s. (The
issue's "about 1 ms" counted three 64-channel activations read and written at 4.3 TB/s; the graph has
one 64-channel and one 32-channel activation at 1536², plus the 3-channel upsampled image.)
"""

from __future__ import annotations

import numpy as np

H200_BANDWIDTH = 4.8e12  # bytes/s, NVIDIA H200 datasheet (HBM3e, SXM)
# Datasheet memory bandwidths by the name nvidia-smi gives, most specific first: the floor's rate when
# the check lands on another card than the H200 (this workplace also lends H100s).
DATASHEET = (
    ("H200", H200_BANDWIDTH, "H200 datasheet, HBM3e"),
    ("H100 PCIe", 2.0e12, "H100 PCIe datasheet, HBM2e"),
    ("H100", 3.35e12, "H100 SXM datasheet, HBM3"),
)
# Elementwise activations that engines fuse into the convolution before them.
FUSED = {"Relu", "PRelu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "Tanh", "Elu", "Selu", "HardSwish"}


def floor_bytes(model, size: int, batch: int, scale: int) -> int:
    """The least bytes one call of ``model`` must move through memory (see the module's docstring)."""
    import onnx
    from onnx import helper

    from sdk.bench.flops import graph_shapes

    found = graph_shapes(model, size, batch, scale)
    if found is None:
        return 0
    graph, shapes, _ = found
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}

    def nbytes(name: str) -> int:
        dims = shapes.get(name)
        if not dims or 0 in dims:
            return 0
        element = np.dtype(helper.tensor_dtype_to_np_dtype(types.get(name, onnx.TensorProto.FLOAT))).itemsize
        return int(np.prod(dims)) * element

    outputs = {v.name for v in graph.output}
    initializers = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    total = 0
    for value in graph.input:
        if value.name not in initializers and len(shapes.get(value.name, [])) == 4:
            total += nbytes(value.name)  # the image, read once
    for node in graph.node:
        for out in node.output:
            fused = node.op_type in FUSED and node.input and node.input[0] in producer
            if fused:
                continue  # the same tensor as its producer's output, counted there
            total += nbytes(out) * (1 if _final(out, graph, outputs) else 2)
    total += sum(int(np.prod(t.dims)) * 4 for t in initializers.values() if len(t.dims) > 1)
    return total


def _final(name: str, graph, outputs: set[str]) -> bool:
    """Written once, never read back: a graph output, or a tensor only a fused activation reads."""
    if name in outputs:
        return True
    readers = [n for n in graph.node if name in n.input]
    return bool(readers) and all(n.op_type in FUSED and n.output[0] in outputs for n in readers)


def row_name(record: dict) -> str:
    """A compare.py record's row as the summary names it."""
    if record["kind"] == "raw":
        return f"raw {record['backend']}"
    if record["kind"] == "sdk":
        return record["backend"]
    names = {"reference": "torch eager fp32", "autocast": "torch fp16 autocast", "peer": "torch compiled"}
    return names.get(record["kind"], f"{record['backend']} {record['kind']}")


def datasheet_bandwidth(gpu_name: str) -> tuple[float, str]:
    """(bytes/s, where the figure comes from) for this GPU; the H200's when the name is not known."""
    for key, rate, source in DATASHEET:
        if key.lower() in gpu_name.lower():
            return rate, source
    return H200_BANDWIDTH, f"H200 datasheet ({gpu_name or 'this GPU'} is not in benchmarks/gpu/floor.py's table)"


def floor_table(results: list[dict], size: int, measured_bandwidth: float | None, gpu_name: str = "") -> list[str]:
    """Markdown lines: each srcnn3 row at ``size`` x3 as a fraction of the memory-bound floor."""
    from sdk.model import Model

    model = Model("srcnn3")
    bandwidth, source = datasheet_bandwidth(gpu_name)
    lines = [
        f"## srcnn3 {size}² -> {size * 3}² fp32 against the memory-bound floor",
        "",
        "floor = least bytes moved (image in, output out, each activation written and read once, activations "
        "fused) / bandwidth; benchmarks/gpu/floor.py says why. Fraction = floor / measured latency (1.0 = at the floor).",
        "",
    ]
    header = f"| row | batch | latency ms | floor ms @ {bandwidth / 1e12:.2f} TB/s ({source}) | fraction |"
    divider = "|---|---|---|---|---|"
    if measured_bandwidth:
        header += f" floor ms @ {measured_bandwidth / 1e12:.2f} TB/s (copy measured) | fraction |"
        divider += "---|---|"
    lines += [header, divider]
    for batch in (1, 8):
        moved = floor_bytes(model, size, batch, 3)
        if not moved:
            lines.append(f"| (shapes could not be inferred at batch {batch}) | | | | |")
            continue
        floor_ms = moved / bandwidth * 1e3
        measured_ms = moved / measured_bandwidth * 1e3 if measured_bandwidth else None
        lines.append(
            f"| ({moved / 1e9:.2f} GB moved) | {batch} | | {floor_ms:.3f} | |"
            + (f" {measured_ms:.3f} | |" if measured_ms else "")
        )
        for r in results:
            if r.get("model") != "srcnn3" or r["size"] != size or r["batch"] != batch or not r.get("latency_ms"):
                continue
            if r["kind"] == "floor":
                continue
            latency = r["latency_ms"]["mean"]
            line = f"| {row_name(r)} on {r['device']} | {batch} | {latency:.3f} | {floor_ms:.3f} | {floor_ms / latency:.3f} |"
            if measured_ms:
                line += f" {measured_ms:.3f} | {measured_ms / latency:.3f} |"
            lines.append(line)
    return lines
