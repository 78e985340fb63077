"""The ``sdk`` command line: ``backends``, ``upscale``, ``info``, and the commands other modules add."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from .declare import add_pipeline_arguments, pipeline_from_args
from .errors import SDKError

# Modules that add subcommands: each has add_commands(subparsers). Imported when the parser is built,
# so they must keep their heavy imports (torch, engines) inside their handlers.
COMMAND_MODULES = ("sdk.zoo.commands", "sdk.bench", "sdk.serve.commands")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except SDKError as exc:
        print(f"sdk: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sdk: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdk", description="Run super-resolution ONNX models on any installed engine."
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("backends", help="list the backends found and whether they can run here")
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help="a model: also show how fast each backend runs it here (auto's measured ranking, cached)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of records")
    p.add_argument("--device", default=None, help="judge availability on this device (cpu, cuda, cuda:N)")
    add_pipeline_arguments(p)
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("upscale", help="upscale images, videos, or folders of them")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or folders")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file (for one input) or folder; inputs are never overwritten",
    )
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (required by runtime-scale models)")
    p.add_argument("--model", default="srcnn3", help="bundled model name or .onnx path (default: srcnn3)")
    p.add_argument("--backend", default="auto", help="backend name or 'auto' (default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--tile",
        default="auto",
        metavar="auto|N|0",
        help="auto (default): tiles only when the whole image would not fit the memory budget; "
        "N: tiles of N x N input pixels; 0: never tile",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        metavar="SIZE",
        help="memory one run may use, e.g. 2GiB or 800MB (default: $SDK_MEMORY_BUDGET, else a share "
        "of the memory available)",
    )
    p.add_argument("--force", action="store_true", help="redo outputs that already exist (by default they are skipped)")
    p.add_argument(
        "--no-exif-orientation",
        action="store_true",
        help="keep the pixels as stored instead of turning photos upright by their EXIF orientation",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on a Ray cluster: a private local one without ADDRESS, 'auto' for this machine's, "
        "or ray://HOST:10001 (put it after the inputs; needs the 'ray' extra)",
    )
    add_pipeline_arguments(p, scale_flag="--model-scale")
    from .video.commands import add_arguments as add_video_arguments

    add_video_arguments(p)
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("info", help="show a model's inputs, outputs, opset, metadata and pipeline")
    p.add_argument("model", help="bundled model name or .onnx path")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--probe",
        action="store_true",
        help="also run the model on ort-cpu/auto under each common value range and say which one "
        "reproduces its input (a hint for --value-range; see README)",
    )
    add_pipeline_arguments(p)
    p.set_defaults(func=cmd_info)

    from .annotate import add_commands as add_annotate

    add_annotate(sub)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # a trimmed install without that part; any other import error is a bug
            raise
        module.add_commands(sub)
    return parser


def cmd_backends(args) -> int:
    from . import list_backends
    from .selection import gpu_summary

    records = list_backends(args.device)
    ranking = _measured_ranking(args) if args.model else None
    if args.json:
        listing = [r.to_dict() for r in records]
        print(json.dumps({"backends": listing, "ranking": ranking} if args.model else listing, indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # The table stays narrow enough for an 80-column terminal; reasons are sentences, so they go
    # below it in full rather than folded into a column.
    table = Table(title="sdk backends")
    for column in ("name", "available", "priority", "devices", "distribution", "version"):
        table.add_column(column, overflow="fold")
    for r in records:
        available = "[green]yes[/]" if r.available else ("[red]load failed[/]" if r.load_error else "[yellow]no[/]")
        priority = "" if r.priority is None else str(r.priority)
        table.add_row(
            escape(r.name), available, priority, ",".join(r.devices), escape(r.distribution), escape(r.version)
        )
    console = Console()
    console.print(table)
    for r in records:
        if not r.available:
            console.print(f"[bold]{escape(r.name)}[/]: {escape(r.reason)}", soft_wrap=True)
    gpus = gpu_summary()
    console.print(
        "GPUs: "
        + (
            ", ".join(
                f"cuda:{g['index']} {g['name']} (sm {g['compute_capability']}, {g['memory_gib']} GiB)" for g in gpus
            )
            or "none found"
        )
    )
    if ranking is not None:  # (measured when a model was named)
        _print_ranking(console, args.model, ranking)
    return 0


def _measured_ranking(args) -> dict:
    """auto's ranking of the engines on the model: from the cache, or measured now (and cached)."""
    from .predictor import Predictor

    with Predictor(args.model, device=args.device or "auto", pipeline=pipeline_from_args(args), tune=True) as p:
        return p.ranking.to_dict() if p.ranking is not None else {"entries": [], "chosen": p.backend}


def _print_ranking(console, model: str, ranking: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not ranking["entries"]:
        console.print(f"{escape(model)}: only {escape(ranking['chosen'])} can run it here; nothing to measure")
        return
    where = "cached" if ranking["cached"] else "measured now"
    table = Table(title=f"auto on {escape(model)} ({escape(ranking['trial'])}; {where})")
    for column in ("rank", "backend", "device", "trial ms", "vs fastest"):
        table.add_column(column)
    fastest = min(e["ms"] for e in ranking["entries"] if e.get("ms") is not None)
    for index, entry in enumerate(ranking["entries"], 1):
        ms = entry.get("ms")
        speed = f"{fastest / ms:.2f}x" if ms else escape(entry.get("error", ""))
        chosen = " (auto)" if entry["backend"] == ranking["chosen"] and index == 1 else ""
        table.add_row(
            str(index), escape(entry["backend"]) + chosen, entry["device"], "-" if ms is None else f"{ms:,.1f}", speed
        )
    console.print(table)


def cmd_upscale(args) -> int:
    from .video import commands as video

    videos, images = video.find_videos(args.inputs)
    if args.ray is not None:
        if videos:
            from .scale.video_ray import cmd_upscale as upscale_videos_on_ray

            return upscale_videos_on_ray(args, videos, images)
        from .scale.ray import cmd_upscale as upscale_on_ray

        return upscale_on_ray(args)
    from . import jobs, tiling
    from .predictor import Predictor

    tile = tiling.parse_tile(args.tile, "--tile ")
    pairs = jobs.plan_outputs(jobs.collect_images(images), Path(args.output)) if images else []
    video_pairs = video.plan_outputs(videos, Path(args.output), alone=not images)
    # Videos share the CPU between the engine and their codecs: the engine is opened for that.
    from .video.engine import open_predictor as open_for_video

    opener = open_for_video if video_pairs else Predictor
    opening = {"backend": args.backend, "device": args.device, "memory_budget": args.memory_budget}
    predictor = opener(args.model, **opening, pipeline=pipeline_from_args(args))
    scale = predictor.check_scale(args.scale)  # a bad --scale fails before any work
    code = 0
    if video_pairs:
        with jobs.stop_on_signals():
            code = video.upscale_videos(args, predictor, video_pairs, scale)
        if code > 1 or not pairs or predictor.concurrent_calls > 1:
            predictor.close()  # one opened with its cores split between calls: images get one with all
        if code > 1 or not pairs:
            return code
        if predictor.concurrent_calls > 1:
            predictor = Predictor(args.model, **opening, pipeline=pipeline_from_args(args))
    with jobs.stop_on_signals(), predictor, jobs.JobProgress(len(pairs)) as progress:
        summary = jobs.run(
            predictor,
            pairs,
            scale,
            tile=tile,
            force=args.force,
            orient=not args.no_exif_orientation,
            on_start=progress.start,
            on_image=progress.image,
            on_tiles=progress.tiles,
        )
    for line in summary.lines(scale, f"{predictor.backend} on {predictor.device}", args.output):
        print(f"sdk: {line}", file=sys.stderr)
    return max(code, summary.exit_code)


def cmd_info(args) -> int:
    from .model import Model
    from .resolution import describe_guesses, resolve
    from .spec import FIELDS, PIPELINE_KEY, PipelineSpec

    model = Model(args.model)
    try:
        resolution, problem = resolve(model, pipeline_from_args(args)), None
    except SDKError as exc:
        resolution, problem = None, str(exc)
    info: dict[str, Any] = {
        "model": model.name,
        "path": str(model.path),
        "opset": model.opset,
        "inputs": [_tensor(i) for i in model.inputs],
        "outputs": [_tensor(o) for o in model.outputs],
        "metadata": model.metadata,
        "pipeline": {name: getattr(resolution.spec, name) for name in FIELDS} if resolution else None,
        # One word for the whole spec (kept for scripts that read it); pipeline_sources has each field's.
        "pipeline_source": "metadata" if PIPELINE_KEY in model.metadata else "inferred",
        "pipeline_sources": dict(resolution.sources) if resolution else None,
    }
    if problem:
        info["pipeline_error"] = problem
    warning = describe_guesses(resolution, model.name) if resolution else None
    if warning:
        info["pipeline_warning"] = warning
    if args.probe and resolution:
        from .predictor import Predictor
        from .value_range import detect_value_range

        with Predictor(model.path, pipeline=resolution.spec) as predictor:
            found = detect_value_range(predictor)
        info["probe"] = {
            "value_range": found.value_range,
            "reason": found.reason,
            "psnr_db": {f"{lo:g}..{hi:g}": round(db, 2) for (lo, hi), db in found.scores.items()},
        }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model     {info['model']}  ({info['path']})")
    print(f"opset     {info['opset']}")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            print(f"{kind[:-1]:9} {t['name']}  {t['dtype']}  {t['shape']}")
    for key, value in model.metadata.items():
        print(f"metadata  {key} = {value}")
    if resolution is None:
        print(f"pipeline  cannot run this model: {problem}")
        print(
            f"          declare what is missing with Predictor(..., pipeline={{...}}) or write it into the file "
            f"with `sdk annotate {args.model} -o OUT.onnx` (its {PIPELINE_KEY!r} metadata)"
        )
        return 0
    spec = resolution.spec
    print("pipeline  field         value                    source")
    shown = {"output_range": "same as value_range", "multiple_of": "1 (any size)"}
    for name in FIELDS:
        value = getattr(spec, name)
        text = shown[name] if name in shown and value == getattr(PipelineSpec, name) else json.dumps(value)
        print(f"          {name:13} {text:24} {resolution.sources[name]}")
    if warning:
        print(f"warning   {warning}")
    if "probe" in info:
        print(f"probe     value range {info['probe']['reason']}")
    return 0


def _tensor(info) -> dict:
    return {
        "name": info.name,
        "dtype": str(info.dtype),
        "shape": ["?" if not isinstance(d, int) else d for d in info.shape],
    }
