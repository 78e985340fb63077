#!/usr/bin/env python
"""Scale-out on Ray: images/s of the folder job with 1 and 2 actors on a local Ray cluster against the
plain local ``sdk upscale`` on the same folder, measured side by side in one run (interleaved rounds),
and what the measured per-image cost means for 10 million 512x512 images at x3 in 24 hours.

    python benchmarks/scale_out.py --images 8 --size 256 --scale 3 --rounds 3 \
        --json benchmarks/results/scale_out.json --md benchmarks/results/scale_out.md

Every configuration runs the same engine (ort-cpu) with all the machine's cores: one actor with
``cores`` threads, two actors with ``cores / 2`` threads each, the local command with its default
(every physical core). Wall times include what a user waits for: the local command's interpreter
start and model load, the Ray job's actor start and model load on an already running cluster (the
cluster's own start is timed separately).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

TARGET_IMAGES = 10_000_000
TARGET_SECONDS = 24 * 3600
TARGET_SIDE = 512
# Assumptions for the estimate (no such machine was measured here): stated once, printed with it.
ASSUMED = {
    "cpu_node_cores": 32,  # physical cores of one CPU node, e.g. a 64-vCPU cloud instance
    "cpu_core_scaling": 1.0,  # per-core throughput of that node relative to this machine's cores
    "gpu_effective_tflops": 20.0,  # sustained conv TFLOP/s of one GPU (L4/A10 class, fp16 TensorRT)
    "gpus_per_node": 1,
    "gpu_node_cpu_cores": 8,  # cores beside each GPU that decode and encode the files
}


def make_folder(folder: Path, count: int, side: int) -> None:
    """``count`` different crops of real photographs (scikit-image ships them offline)."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    for i in range(count):
        image = Image.fromarray(photos[i % len(photos)]).resize((side + 8 * i, side + 8 * i), Image.Resampling.BICUBIC)
        image.crop((4 * i, 4 * i, 4 * i + side, 4 * i + side)).save(folder / f"{i:03d}.png")


def time_local_command(folder: Path, out: Path, args) -> float:
    command = [
        sys.executable,
        "-m",
        "sdk",
        "upscale",
        str(folder),
        "-o",
        str(out),
        "--model",
        args.model,
        "--scale",
        str(args.scale),
        "--backend",
        "ort-cpu",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"local sdk upscale failed ({done.returncode}):\n{done.stderr}")
    return seconds


def time_ray_job(folder: Path, out: Path, args, actors: int, cores: int) -> float:
    from sdk.scale.ray import upscale_files

    started = time.perf_counter()
    summary = upscale_files(
        [folder],
        out,
        model=args.model,
        scale=args.scale,
        backend="ort-cpu",
        actors=actors,
        batch_size=1,
        options={"intra_op_num_threads": max(1, cores // actors)},
    )
    seconds = time.perf_counter() - started
    if summary.failures or summary.written != args.images:
        raise SystemExit(f"the Ray job with {actors} actor(s) did not upscale every image: {summary}")
    return seconds


def per_image_costs(args) -> dict:
    """What one 512x512 x3 image costs on this machine: the engine, the decode and the encode.

    Both wall seconds and the process's CPU seconds (all its threads: core-seconds) are measured. The
    estimate uses the CPU seconds: on a machine shared with other work, wall time measures the
    neighbours too, while the core-seconds an image consumes change much less.
    """
    from PIL import Image
    from skimage import data

    from sdk import Predictor
    from sdk.images import save_atomic, to_rgb

    stages = ("engine", "decode", "encode")
    wall = {stage: [] for stage in stages}
    cpu = {stage: [] for stage in stages}

    def timed(stage, work):
        w, c = time.perf_counter(), time.process_time()
        result = work()
        wall[stage].append(time.perf_counter() - w)
        cpu[stage].append(time.process_time() - c)
        return result

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in.png"
        Image.fromarray(data.astronaut()).resize((TARGET_SIDE, TARGET_SIDE)).save(source)
        with Predictor(args.model, backend="ort-cpu") as predictor:
            predictor(to_rgb(source), scale=args.scale)  # warm-up
            for _ in range(args.cost_runs):
                image = timed("decode", lambda: to_rgb(source))
                result = timed("engine", lambda: predictor(image, scale=args.scale))
                timed("encode", lambda: save_atomic(result, Path(scratch) / "out.png"))
    return {
        "runs": args.cost_runs,
        "cpu_s": {stage: statistics.median(cpu[stage]) for stage in stages},
        "wall_s": {stage: statistics.median(wall[stage]) for stage in stages},
        "wall_min_s": {stage: min(wall[stage]) for stage in stages},
    }


def estimate(costs: dict, ray_efficiency: float, scale: int) -> dict:
    """Nodes for TARGET_IMAGES in TARGET_SECONDS, from the measured costs and the ASSUMED machines."""
    needed_rate = TARGET_IMAGES / TARGET_SECONDS
    cpu = costs["cpu_s"]
    io_core_seconds = cpu["decode"] + cpu["encode"]
    core_seconds = cpu["engine"] + io_core_seconds
    cpu_node_rate = ASSUMED["cpu_node_cores"] * ASSUMED["cpu_core_scaling"] / core_seconds * ray_efficiency
    # GPU node: the engine time from SRCNN's FLOPs at the output size (counted from the graph) at an
    # assumed GPU speed; the files are decoded and encoded by actors sharing the GPU (gpus_per_actor
    # = GPUs / cores), one per core, at the per-core cost measured here.
    output_pixels = (TARGET_SIDE * scale) ** 2
    flops = 2 * output_pixels * (9 * 9 * 3 * 64 + 1 * 1 * 64 * 32 + 5 * 5 * 32 * 3)
    gpu_seconds = flops / (ASSUMED["gpu_effective_tflops"] * 1e12)
    gpu_bound = ASSUMED["gpus_per_node"] / gpu_seconds
    cpu_bound = ASSUMED["gpu_node_cpu_cores"] / (io_core_seconds + gpu_seconds)
    gpu_node_rate = min(gpu_bound, cpu_bound) * ray_efficiency
    return {
        "needed_images_per_s": needed_rate,
        "cpu": {
            "core_seconds_per_image": core_seconds,
            "node_images_per_s": cpu_node_rate,
            "nodes": math.ceil(needed_rate / cpu_node_rate),
        },
        "gpu": {
            "gflop_per_image": flops / 1e9,
            "gpu_seconds_per_image": gpu_seconds,
            "io_core_seconds_per_image": io_core_seconds,
            "node_images_per_s": gpu_node_rate,
            "gpus_per_actor": ASSUMED["gpus_per_node"] / ASSUMED["gpu_node_cpu_cores"],
            "bound_by": "GPU" if gpu_bound < cpu_bound else "CPU decode/encode",
            "cores_to_feed_one_gpu": math.ceil((io_core_seconds + gpu_seconds) / gpu_seconds),
            "nodes": math.ceil(needed_rate / gpu_node_rate),
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scale_out.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="srcnn3")
    parser.add_argument("--images", type=int, default=8, help="images in the folder (default 8)")
    parser.add_argument("--size", type=int, default=256, help="side of each input image (default 256)")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three configurations")
    parser.add_argument("--cost-runs", type=int, default=5, help="runs of the 512x512 per-image cost (fastest kept)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run for the test suite (2 images of 32x32, one round, one cost run)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.size, args.rounds, args.cost_runs = 2, 32, 1, 1

    import ray

    from sdk.devices import cpu_cores
    from sdk.files import atomic_write

    cores = cpu_cores()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="sdk-scale-out-"))
    try:
        folder = work / "in"
        make_folder(folder, args.images, args.size)
        started = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=cores,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="warning",
        )
        cluster_start = time.perf_counter() - started
        ray.data.DataContext.get_current().enable_progress_bars = False
        configs = {
            "local sdk upscale": lambda out: time_local_command(folder, out, args),
            "Ray, 1 actor": lambda out: time_ray_job(folder, out, args, 1, cores),
            "Ray, 2 actors": lambda out: time_ray_job(folder, out, args, 2, cores),
        }
        walls = {name: [] for name in configs}
        for round_ in range(args.rounds):
            names = list(configs)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]  # rotate the order per round
            for name in names:
                out = work / f"out-{round_}-{len(walls[name])}-{name.replace(' ', '_').replace(',', '')}"
                walls[name].append(configs[name](out))
                shutil.rmtree(out)
                print(f"round {round_ + 1}: {name}: {walls[name][-1]:.2f} s", file=sys.stderr)
        ray.shutdown()
        costs = per_image_costs(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in walls.items()}
    local = medians["local sdk upscale"]
    rows = [
        {"config": name, "median_s": m, "images_per_s": args.images / m, "vs_local": local / m, "walls_s": walls[name]}
        for name, m in medians.items()
    ]
    best_ray = max(r["images_per_s"] for r in rows if r["config"].startswith("Ray"))
    ray_efficiency = min(1.0, best_ray / (args.images / local))
    result = {
        "machine": {
            "cores": cores,
            "python": platform.python_version(),
            "ray": ray.__version__,
            "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        },
        "workload": {
            "model": args.model,
            "images": args.images,
            "side": args.size,
            "scale": args.scale,
            "rounds": args.rounds,
        },
        "cluster_start_s": cluster_start,
        "runs": rows,
        "per_image_512": costs,
        "ray_efficiency": ray_efficiency,
        "assumed": ASSUMED,
        "estimate": estimate(costs, ray_efficiency, args.scale),
    }
    text = markdown(result)
    print(text)
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2) + "\n")
    if args.md:
        atomic_write(args.md, text)
    return 0


def markdown(r: dict) -> str:
    w, e, c, m = r["workload"], r["estimate"], r["per_image_512"], r["machine"]
    cpu, gpu, assumed = e["cpu"], e["gpu"], r["assumed"]
    load = m["load_average_1m"]
    lines = [
        f"# Scale-out on Ray: {w['images']} images of {w['side']}x{w['side']}, {w['model']} x{w['scale']}",
        "",
        f"Measured on {m['cores']} cores, Ray {m['ray']}, Python {m['python']}; median of {w['rounds']} interleaved"
        f" rounds; 1-minute load average {load['before']:.1f} before, {load['after']:.1f} after (other work shared"
        f" the machine: compare the ratios, not the seconds). Starting the local Ray cluster (not in the times):"
        f" {r['cluster_start_s']:.1f} s.",
        "",
        "| configuration | median wall (s) | images/s | vs local |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {x['config']} | {x['median_s']:.2f} | {x['images_per_s']:.2f} | {x['vs_local']:.2f}x |" for x in r["runs"]
    ]
    lines += [
        "",
        f"## 10 million {TARGET_SIDE}x{TARGET_SIDE} images at x{w['scale']} in 24 h "
        f"({e['needed_images_per_s']:.0f} images/s)",
        "",
        f"Measured here, per {TARGET_SIDE}x{TARGET_SIDE} image (median of {c['runs']} runs), in CPU seconds of the"
        f" process (core-seconds) and wall seconds: engine (ort-cpu, {m['cores']} threads) {c['cpu_s']['engine']:.2f}"
        f" core-s / {c['wall_s']['engine']:.2f} s; PNG decode {c['cpu_s']['decode'] * 1000:.0f} core-ms /"
        f" {c['wall_s']['decode'] * 1000:.0f} ms; PNG encode of the {TARGET_SIDE * w['scale']}x{TARGET_SIDE * w['scale']}"
        f" output {c['cpu_s']['encode'] * 1000:.0f} core-ms / {c['wall_s']['encode'] * 1000:.0f} ms. The estimate uses the"
        " core-seconds (wall time on a shared machine measures the neighbours), and the best Ray configuration's"
        f" throughput relative to the local command on this folder, {r['ray_efficiency']:.2f}.",
        "",
        "Assumed, not measured: " + ", ".join(f"{k} = {v}" for k, v in assumed.items()) + " (cpu_core_scaling: a node's"
        " core against one of these); SRCNN's FLOPs counted from its three convolutions at the output size.",
        "",
        "| node | images/s per node | nodes for 24 h | from |",
        "|---|---:|---:|---|",
        f"| CPU, {assumed['cpu_node_cores']} cores | {cpu['node_images_per_s']:.1f} | **{cpu['nodes']}** |"
        f" {cpu['core_seconds_per_image']:.2f} core-s per image (measured) over {assumed['cpu_node_cores']} cores (assumed) |",
        f"| GPU, {assumed['gpus_per_node']} GPU + {assumed['gpu_node_cpu_cores']} cores | {gpu['node_images_per_s']:.1f} |"
        f" **{gpu['nodes']}** | engine {gpu['gflop_per_image']:.1f} GFLOP at {assumed['gpu_effective_tflops']} TFLOP/s"
        f" (assumed) = {gpu['gpu_seconds_per_image'] * 1000:.1f} ms; decode + encode {gpu['io_core_seconds_per_image'] * 1000:.0f}"
        f" core-ms (measured); bound by {gpu['bound_by']} |",
        "",
        f"On the GPU node the files, not the model, set the pace: one GPU would need about {gpu['cores_to_feed_one_gpu']}"
        f" cores decoding and encoding to stay busy. Run several actors per GPU"
        f" (`gpus_per_actor={gpu['gpus_per_actor']:g}`, one per core) so that they decode and encode side by side.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
