#!/usr/bin/env python
"""Video throughput: the SDK's pipeline against each of its stages alone, the bound they set, and the
loop users write today (ffmpeg subprocesses piping rgb24 frames through the same engine), measured
side by side in one run (interleaved rounds); and peak memory for a short and a long clip.

    python benchmarks/video.py --frames 48 --rounds 2 --rss-frames 100 1000 \
        --json benchmarks/results/video.json --md benchmarks/results/video.md --png benchmarks/results/video.png

Cases: espcn x3 from 640x360 (to 1920x1080, where encoding is heaviest) and srcnn3 x2 from 640x360,
on ort-cpu, encoding with libx264 (CRF 18, preset medium) in both arms. Clips are made here from a
panned photograph (no downloads).

- pipeline: ``sdk.video.upscale_video`` file to file (decode, RGB, engine, YCbCr, encode in threads);
- stages alone, on the same frames: decode (PyAV + conversion to RGB), engine (the Predictor on
  frames in memory, run as the pipeline runs it: the same plan, the same engine calls at once through
  the same stage), encode (conversion to YCbCr + x264); each with its CPU seconds per frame;
- one call at a time: the pipeline and its engine stage with the engine opened as before engine
  workers (one call at a time over all cores), side by side with the default (one single-threaded
  call per core, ``sdk.video.open_predictor``), so the lever is measured in every run;
- bound: the lower of the slowest stage's rate and cores / (CPU seconds per frame of all stages),
  since on a CPU machine the stages share the cores (on a GPU machine the slowest stage alone);
- pipe loop: ffmpeg decodes to rgb24 on a pipe, Python runs the Predictor one frame at a time and
  writes rgb24 to a second ffmpeg that encodes (Real-ESRGAN's video script). No system ffmpeg is
  needed: the binary of the imageio-ffmpeg package (PyPI) is used, in this benchmark only;
- peak RSS of a whole ``upscale_video`` process at each of --rss-frames (the first case).

Goals (printed beside each figure): pipeline >= 0.9 x bound, ahead of the pipe loop, RSS at the
longest clip <= 1.1 x RSS at the shortest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CASES = {"espcn": ("espcn", 3), "srcnn3": ("srcnn3", 2)}
CRF, PRESET = 18, "medium"


def make_clip(path: Path, frames: int, width: int, height: int) -> Path:
    """A photograph panned across ``frames`` frames, x264 CRF 18, BT.709-tagged 4:2:0."""
    import av
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.coffee()).resize((width * 2, height * 2), Image.Resampling.BICUBIC)
    big = np.asarray(photo)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ctx = stream.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1
        ctx.color_range = 1
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in range(frames):
            x = int((width * i) / max(1, frames - 1))
            y = int((height * i) / max(1, frames - 1) / 2)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[y : y + height, x : x + width]), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


class Clock:
    """Wall and CPU seconds of this process (all its threads) and its finished children."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu() - self.cpu


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# -- the arms ---------------------------------------------------------------------------------------


def run_pipeline(predictor, clip: Path, out: Path, scale: int) -> Clock:
    from sdk.video import upscale_video

    out.unlink(missing_ok=True)
    with Clock() as clock:
        upscale_video(predictor, clip, out, scale=scale, crf=CRF, preset=PRESET)
    return clock


def stage_decode(clip: Path) -> tuple[Clock, list]:
    from sdk.video import read_frames

    with Clock() as clock:
        frames = [f.pixels for f in read_frames(clip)]
    return clock, frames


def stage_engine(predictor, frames: list, scale: int) -> tuple[Clock, list]:
    """The engine stage alone, as the pipeline runs it (sdk.video.job): its plan, its batch, its
    engine calls at once, through the same Stage."""
    from sdk.video import job, stages

    batch = job.CPU_BATCH if predictor.device == "cpu" else job.BATCH
    plan, calls = job.engine_plan(predictor, frames[0].shape[:2], scale, "auto", batch)
    per_call = 1 if plan.tiled else plan.batch

    def engine(items):
        return list(predictor.run_plan(np.stack(items), scale, plan))

    stage = stages.Stage("engine", engine, batch=per_call, workers=calls)
    with Clock() as clock, stages.Pipeline(iter(frames), [stage]) as run:
        outs = list(run)
    return clock, outs


def stage_encode(clip: Path, results: list, scale: int) -> Clock:
    from sdk.video import encoder, frames, source

    found = source.probe(clip)
    plan = encoder.plan(encoder.EncoderSettings(crf=CRF, preset=PRESET), found, "matroska", scale)
    with Clock() as clock:
        ctx = encoder.open_encoder(plan, found)
        count = 0
        for pts, pixels in zip(found.pts, results):
            count += len(ctx.encode(frames.to_frame(pixels, pts, plan, found)))
        count += len(ctx.encode(None))
    return clock


def ffmpeg_binary() -> str | None:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_pipe_loop(ffmpeg: str, predictor, clip: Path, out: Path, scale: int, width: int, height: int) -> Clock:
    """What Real-ESRGAN's video script does: rgb24 frames over pipes, one engine call per frame."""
    quiet = ["-hide_banner", "-loglevel", "error"]
    size = width * height * 3
    with Clock() as clock:
        decoder = subprocess.Popen(
            [ffmpeg, *quiet, "-i", str(clip), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE
        )
        encoder = subprocess.Popen(
            [ffmpeg, *quiet, "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width * scale}x{height * scale}"]
            + ["-r", "25", "-i", "-", "-c:v", "libx264", "-crf", str(CRF), "-preset", PRESET, "-pix_fmt", "yuv420p"]
            + [str(out)],
            stdin=subprocess.PIPE,
        )
        while True:
            data = decoder.stdout.read(size)
            if len(data) < size:
                break
            frame = np.frombuffer(data, np.uint8).reshape(height, width, 3)
            encoder.stdin.write(predictor(frame, scale=scale).tobytes())
        encoder.stdin.close()
        encoder.wait()
        decoder.wait()
    return clock


def peak_rss(model: str, scale: int, clip: Path, out: Path) -> int:
    """Peak resident memory (bytes) of a fresh process that upscales ``clip`` file to file, as the
    process itself reads it (sdk.bench.worker.peak_rss_mb: wait4's figure would include this
    benchmark's own memory at the fork)."""
    from sdk.bench.worker import REPORT_PEAK, reported_peak_bytes

    code = (
        "import sys\nfrom sdk.video import open_predictor, upscale_video\n"
        "with open_predictor(sys.argv[1], backend='ort-cpu') as p:\n"
        f"    upscale_video(p, sys.argv[2], sys.argv[3], scale={scale}, crf={CRF}, preset='{PRESET}')\n"
        f"{REPORT_PEAK}\n"
    )
    out.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-c", code, model, str(clip), str(out)], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the RSS run failed ({done.returncode})")
    return reported_peak_bytes(done.stdout)


# -- the run ------------------------------------------------------------------------------------------


def measure(args) -> dict:
    import sdk
    from sdk.sharing import open_predictor as open_shared
    from sdk.video import open_predictor

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="sdk-video-bench-"))
    ffmpeg = ffmpeg_binary()
    report = {
        "machine": {"cores": cores, "python": platform.python_version(), "platform": platform.platform()},
        # The machine is shared: the load beside the figures says how much the neighbours took.
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "md", "png")},
        "ffmpeg": ffmpeg and ("system ffmpeg" if shutil.which("ffmpeg") else "imageio-ffmpeg's binary (PyPI)"),
        "cases": {},
    }
    width, height = args.size
    clip = make_clip(work / "clip.mkv", args.frames, width, height)
    try:
        for name in args.cases:
            model, scale = CASES[name]
            # The pipeline and its stages get the Predictor `sdk upscale` opens for videos; the "one
            # call" arms the same without engine workers; the pipe loop the one users open today.
            with (
                open_predictor(model, backend=args.backend) as predictor,
                open_shared(model, backend=args.backend, calls=1) as single,
                sdk.Predictor(model, backend=args.backend) as plain,
            ):
                engines = {"": predictor, "one_call_": single, "plain": plain}
                case = measure_case(engines, clip, work, scale, width, height, args, ffmpeg, cores)
            report["cases"][f"{name} x{scale} from {width}x{height}"] = case
            print(json.dumps({name: case["summary"]}, indent=1), flush=True)
        if args.rss_frames:
            model, scale = CASES[args.cases[0]]
            rss = {}
            for frames in args.rss_frames:
                long_clip = make_clip(work / f"rss-{frames}.mkv", frames, width, height)
                rss[str(frames)] = peak_rss(model, scale, long_clip, work / "rss-out.mkv")
                long_clip.unlink()
                print(f"peak RSS at {frames} frames: {rss[str(frames)] / 2**20:.0f} MiB", flush=True)
            low, high = min(args.rss_frames), max(args.rss_frames)
            report["rss"] = {
                "case": args.cases[0],
                "bytes": rss,
                "ratio": rss[str(high)] / rss[str(low)],
                "goal": 1.1,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def measure_case(engines, clip, work, scale, width, height, args, ffmpeg, cores) -> dict:
    frames = args.frames
    predictor, single, plain = engines[""], engines["one_call_"], engines["plain"]
    # Warm the engines (sessions, optimised model caches) before anything is timed.
    for engine in engines.values():
        engine.predict_batch([np.zeros((height, width, 3), np.uint8)] * 2, scale=scale, batch_size=4)
    names = ("pipeline", "one_call_pipeline", "pipe_loop", "decode", "engine", "one_call_engine", "encode")
    rounds: dict[str, list] = {name: [] for name in names}
    for _ in range(args.rounds):  # interleaved: every arm once per round
        rounds["pipeline"].append(run_pipeline(predictor, clip, work / "out.mkv", scale))
        rounds["one_call_pipeline"].append(run_pipeline(single, clip, work / "out.mkv", scale))
        if ffmpeg:
            rounds["pipe_loop"].append(run_pipe_loop(ffmpeg, plain, clip, work / "loop.mkv", scale, width, height))
        clock, decoded = stage_decode(clip)
        rounds["decode"].append(clock)
        rounds["one_call_engine"].append(stage_engine(single, decoded, scale)[0])
        clock, results = stage_engine(predictor, decoded, scale)
        rounds["engine"].append(clock)
        del decoded
        rounds["encode"].append(stage_encode(clip, results, scale))
        del results

    def per_frame(clocks, attr):
        return statistics.median(getattr(c, attr) for c in clocks) / frames

    stages = {
        s: {"s_per_frame": per_frame(rounds[s], "wall"), "cpu_s_per_frame": per_frame(rounds[s], "cpu")}
        for s in ("decode", "engine", "encode")
    }
    slowest_stage = max(stages, key=lambda k: stages[k]["s_per_frame"])
    slowest = stages[slowest_stage]["s_per_frame"]
    cpu = sum(v["cpu_s_per_frame"] for v in stages.values())
    bound = min(1 / slowest, cores / cpu)
    bound_by = f"the {slowest_stage} stage alone" if 1 / slowest <= cores / cpu else f"{cores} cores / CPU s per frame"
    fps = 1 / per_frame(rounds["pipeline"], "wall")
    loop = 1 / per_frame(rounds["pipe_loop"], "wall") if rounds["pipe_loop"] else None
    summary = {
        "pipeline_fps": round(fps, 3),
        "bound_fps": round(bound, 3),
        "bound_by": bound_by,
        "pipeline_over_bound": round(fps / bound, 3),
        "goal_over_bound": 0.9,
        "pipe_loop_fps": loop and round(loop, 3),
        "pipeline_over_pipe_loop": loop and round(fps / loop, 3),
        "goal_over_pipe_loop": 1.0,
        "engine_calls_at_once": predictor.concurrent_calls,
    }
    one_call = 1 / per_frame(rounds["one_call_pipeline"], "wall")
    return {
        "summary": summary,
        # The same pipeline and engine stage with one engine call at a time over all cores (the setting
        # before engine workers), measured in the same rounds.
        "one_call_at_a_time": {
            "pipeline_fps": round(one_call, 3),
            "pipeline_over_it": round(fps / one_call, 3),
            "engine_fps": round(1 / per_frame(rounds["one_call_engine"], "wall"), 3),
            "engine_cpu_s_per_frame": round(per_frame(rounds["one_call_engine"], "cpu"), 4),
            "pipeline_cpu_s_per_frame": round(per_frame(rounds["one_call_pipeline"], "cpu"), 4),
        },
        "stages": {k: {m: round(x, 4) for m, x in v.items()} for k, v in stages.items()},
        "stage_fps": {k: round(1 / v["s_per_frame"], 3) for k, v in stages.items()},
        "pipeline_cpu_s_per_frame": round(per_frame(rounds["pipeline"], "cpu"), 4),
        "pipe_loop_cpu_s_per_frame": rounds["pipe_loop"] and round(per_frame(rounds["pipe_loop"], "cpu"), 4),
        "rounds": {k: [round(c.wall, 3) for c in v] for k, v in rounds.items()},
    }


def write_md(report: dict, path: Path) -> None:
    s = report["settings"]
    lines = [
        "# Video throughput (benchmarks/video.py)",
        "",
        f"{report['machine']['cores']} cores, {s['frames']} frames of {s['size'][0]}x{s['size'][1]}, "
        f"{s['rounds']} interleaved round(s), backend {s['backend']}, libx264 CRF {CRF} preset {PRESET}; "
        f"pipe loop with {report['ffmpeg'] or 'no ffmpeg found (arm skipped)'}.",
        f"Load average (1, 5, 15 min) {_load(report['load_before'])} before, {_load(report['load_after'])} after: "
        "the machine is shared, so compare the ratios (measured side by side, interleaved), not the seconds.",
        "Bound: min(slowest stage alone, cores / CPU seconds per frame of all stages together).",
        "",
        "| case | pipeline fps | bound fps (set by) | pipeline / bound (goal >= 0.9) | pipe loop fps "
        "| pipeline / pipe loop (goal > 1) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, case in report["cases"].items():
        c = case["summary"]
        lines.append(
            f"| {name} | {c['pipeline_fps']} | {c['bound_fps']} ({c['bound_by']}) | {c['pipeline_over_bound']} "
            f"| {c['pipe_loop_fps']} "
            f"| {c['pipeline_over_pipe_loop']} |"
        )
    lines += ["", "| case | stage | fps alone | CPU s / frame |", "| --- | --- | --- | --- |"]
    for name, case in report["cases"].items():
        for stage, values in case["stages"].items():
            lines.append(f"| {name} | {stage} | {case['stage_fps'][stage]} | {values['cpu_s_per_frame']} |")
    lines += [
        "",
        "Engine calls at once (default: one single-threaded call per core) against one call at a time over all "
        "cores, same rounds:",
        "",
        "| case | calls at once | pipeline fps | one call: pipeline fps | ratio | CPU s / frame (pipeline, one call) "
        "| engine fps alone (workers, one call) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, case in report["cases"].items():
        c, one = case["summary"], case["one_call_at_a_time"]
        lines.append(
            f"| {name} | {c['engine_calls_at_once']} | {c['pipeline_fps']} | {one['pipeline_fps']} "
            f"| {one['pipeline_over_it']} | {case['pipeline_cpu_s_per_frame']}, {one['pipeline_cpu_s_per_frame']} "
            f"| {case['stage_fps']['engine']}, {one['engine_fps']} |"
        )
    if "rss" in report:
        r = report["rss"]
        shown = ", ".join(f"{k} frames {v / 2**20:.0f} MiB" for k, v in r["bytes"].items())
        lines += ["", f"Peak RSS ({r['case']}): {shown}; ratio {r['ratio']:.3f} (goal <= {r['goal']})."]
    lines += ["", "Command: `" + report["command"] + "`", ""]
    path.write_text("\n".join(lines))


def _load(values) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def write_png(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["cases"])
    arms = ["pipeline_fps", "bound_fps", "pipe_loop_fps"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, arm in enumerate(arms):
        values = [report["cases"][n]["summary"][arm] or 0 for n in names]
        ax.bar(np.arange(len(names)) + (i - 1) * 0.25, values, 0.25, label=arm.replace("_fps", "").replace("_", " "))
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("frames per second")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--frames", type=int, default=48, help="frames of the throughput clip")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--rss-frames", type=int, nargs="*", default=[100, 1000], metavar="N")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for the test suite (64x36, 4 frames)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.frames, args.size, args.rounds, args.rss_frames = 4, (64, 36), 1, [2, 4]
    report = measure(args)
    report["command"] = "python benchmarks/video.py " + " ".join(argv if argv is not None else sys.argv[1:])
    from sdk.files import atomic_write

    if args.json:
        atomic_write(args.json, json.dumps(report, indent=1))
    if args.md:
        write_md(report, args.md)
    if args.png:
        write_png(report, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
