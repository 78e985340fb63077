"""Photos at their real size: peak memory and time of `sdk upscale`, and what tiling costs.

    python benchmarks/photos.py --out benchmarks/results/photos_cpu

1. A generated 4000x3000 photo at x3 with default settings (`sdk upscale in.png -o out.png --scale 3`),
   in a subprocess: wall time and peak RSS (the kernel's high-water mark of that process, VmHWM).
   Untiled, this job would need a 27.6 GB first convolution; the target is a peak RSS <= 3 GB.
2. A size that fits untiled (default 1024x768 at x3): the default (`--tile auto`, tiles sized to the
   memory budget) against `--tile 0`, both as subprocesses for peak RSS, and in-process, interleaved
   run by run, for the throughput ratio and the largest difference between the two results.
   Target: tiling costs <= 10% of throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like picture: the astronaut, resized, with fine noise so every tile has detail."""
    from PIL import Image
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 4, (height, width, 3))
    return np.clip(np.asarray(base, dtype=np.float64) + noise, 0, 255).astype(np.uint8)


def run_cli(args: list[str]) -> dict:
    """`sdk upscale ...` in a subprocess: its wall time and peak RSS, as the job reports it
    (sdk.bench.worker.REPORT_PEAK)."""
    from sdk.bench.worker import REPORT_PEAK, reported_peak_bytes

    code = f"import sys\nfrom sdk.cli import main\ncode = main(sys.argv[1:])\n{REPORT_PEAK}\nsys.exit(code)\n"
    cmd = [sys.executable, "-c", code, "upscale", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"photos.py: sdk upscale {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_gb": round(reported_peak_bytes(done.stdout) / 1e9, 3),
        "command": " ".join(["-m", "sdk", "upscale", *args]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="write OUT.json and OUT.md")
    parser.add_argument("--model", default="srcnn3")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--big", default="4000x3000", help="WxH of the photo run with default settings")
    parser.add_argument("--fits", default="1024x768", help="WxH of a photo that fits untiled")
    parser.add_argument("--repeats", type=int, default=3, help="in-process runs per mode, interleaved")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run for the test suite (96x64 and 48x32 photos, one run each)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.big, args.fits, args.repeats = "96x64", "48x32", 1

    from PIL import Image

    import sdk
    from sdk import memory

    big_w, big_h = (int(v) for v in args.big.split("x"))
    fit_w, fit_h = (int(v) for v in args.fits.split("x"))
    common = ["--scale", str(args.scale), "--model", args.model, "--backend", "ort-cpu"]
    report = {
        "model": args.model,
        "scale": args.scale,
        "default_budget_gb": round(memory.budget() / 1e9, 3),
        "machine_memory_gb": round(memory.total() / 1e9, 1),
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Image.fromarray(photo(big_h, big_w)).save(tmp / "big.png")
        Image.fromarray(photo(fit_h, fit_w, seed=1)).save(tmp / "fits.png")

        print(f"{args.big} x{args.scale}, default settings ...", file=sys.stderr)
        big = run_cli([str(tmp / "big.png"), "-o", str(tmp / "big_out.png"), *common])
        with Image.open(tmp / "big_out.png") as written:
            big["output_size"] = list(written.size)
        report["big"] = {"size": args.big, **big}

        print(f"{args.fits} x{args.scale}, tiled vs untiled (subprocesses) ...", file=sys.stderr)
        tiled_cli = run_cli([str(tmp / "fits.png"), "-o", str(tmp / "fits_auto.png"), *common])
        untiled_cli = run_cli([str(tmp / "fits.png"), "-o", str(tmp / "fits_0.png"), *common, "--tile", "0"])

        print(f"{args.fits} x{args.scale}, tiled vs untiled (in-process, interleaved) ...", file=sys.stderr)
        predictor = sdk.Predictor(args.model, backend="ort-cpu")
        picture = np.asarray(Image.open(tmp / "fits.png"))
        plan = predictor.plan((fit_h, fit_w), args.scale, "auto")
        predictor(picture, scale=args.scale, tile=0)  # warm-up: the engine's first run allocates its arena
        times = {"auto": [], "0": []}
        results = {}
        for _ in range(args.repeats):
            for mode in ("auto", "0"):
                tile = "auto" if mode == "auto" else 0
                start = time.perf_counter()
                results[mode] = predictor(picture, scale=args.scale, tile=tile)
                times[mode].append(time.perf_counter() - start)
        ratio = statistics.median(times["auto"]) / statistics.median(times["0"])
        diff = int(np.abs(results["auto"].astype(int) - results["0"]).max())
        report["fits"] = {
            "size": args.fits,
            "plan": None
            if not plan.tiled
            else {
                "window": list(plan.window),
                "margin": plan.margin,
                "batch": plan.batch,
                "tiles": plan.count(fit_h, fit_w),
            },
            "cli_tiled": tiled_cli,
            "cli_untiled": untiled_cli,
            "median_s_tiled": round(statistics.median(times["auto"]), 3),
            "median_s_untiled": round(statistics.median(times["0"]), 3),
            "time_ratio_tiled_over_untiled": round(ratio, 3),
            "throughput_cost_pct": round((1 - 1 / ratio) * 100, 1),
            "max_abs_diff": diff,
        }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    from sdk.files import atomic_write

    atomic_write(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write(args.out.with_suffix(".md"), markdown(report) + "\n")
    print(markdown(report))
    return 0


def markdown(r: dict) -> str:
    big, fits = r["big"], r["fits"]
    plan = fits["plan"]
    lines = [
        f"# Photos: `{r['model']}` x{r['scale']} on ort-cpu ({r['cpus']} CPUs, {r['machine_memory_gb']} GB RAM, "
        f"default memory budget {r['default_budget_gb']} GB)",
        "",
        "| run | wall s | peak RSS GB |",
        "|---|---|---|",
        f"| {big['size']} -> {big['output_size'][0]}x{big['output_size'][1]}, default settings | {big['wall_s']} | {big['peak_rss_gb']} |",
        f"| {fits['size']}, default (`--tile auto`) | {fits['cli_tiled']['wall_s']} | {fits['cli_tiled']['peak_rss_gb']} |",
        f"| {fits['size']}, `--tile 0` | {fits['cli_untiled']['wall_s']} | {fits['cli_untiled']['peak_rss_gb']} |",
        "",
        f"In-process, {fits['size']} interleaved: tiled median {fits['median_s_tiled']} s, untiled median "
        f"{fits['median_s_untiled']} s, ratio {fits['time_ratio_tiled_over_untiled']} "
        f"(tiling costs {fits['throughput_cost_pct']}% of throughput); max |tiled - untiled| = {fits['max_abs_diff']} grey level(s).",
        "Tiles: "
        + (
            "none (fits the budget)"
            if plan is None
            else f"{plan['tiles']} windows of {plan['window'][0]}x{plan['window'][1]}, margin {plan['margin']}, batch {plan['batch']}"
        )
        + ".",
        "",
        f"Commands: `{big['command']}`; `{fits['cli_untiled']['command']}`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
