"""The benchmark's command-line options, shared by ``sdk bench`` and ``benchmarks/compare.py``."""

from __future__ import annotations

import argparse

from ..declare import add_pipeline_arguments

SCHEDULES = ("interleaved", "sequential")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="srcnn3", help="bundled model name or .onnx path (default: srcnn3)")
    parser.add_argument(
        "--size",
        type=_positive,
        nargs="+",
        default=[256],
        metavar="N",
        help="input side(s) in pixels: the photo is resized to N x N (default: 256)",
    )
    parser.add_argument(
        "--scale",
        type=_positive,
        default=None,
        help="upscaling factor (default: the model's own, or 3 for a runtime-scale model)",
    )
    parser.add_argument(
        "--batch",
        type=_positive,
        nargs="+",
        default=[1],
        metavar="B",
        help="images per call; several values run one after the other (default: 1)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["all"],
        metavar="NAME",
        help="'all' (default), or backend names, 'auto' (what backend='auto' chooses), 'raw' (every backend's own raw baseline), "
        "'raw-NAME', 'torch-channels-last', 'torch-compiled', 'torch-fp16' (eager under autocast to float16, shown "
        "not judged), 'floor' (commas or spaces). torch eager always runs: it is the accuracy reference",
    )
    parser.add_argument(
        "--unoptimized",
        action="store_true",
        help="also run every SDK backend with optimize=False (the graph as it is): the "
        "optimisation pass's before/after in one run",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="BACKEND:KEY=VALUE[,KEY=VALUE]",
        help="an extra SDK row of BACKEND with these Predictor options, e.g. precision=int8 or "
        "optimize=false (repeatable; values true/false/numbers are typed)",
    )
    parser.add_argument(
        "--torch-module",
        default=None,
        metavar="FILE.py:NAME",
        help="the PyTorch rows run this module (NAME() returns the nn.Module the ONNX file was exported "
        "from, with its weights) instead of rebuilding the network from the graph: community "
        "architectures, e.g. benchmarks/devkit/archs.py:compact",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (each backend's own default), cpu, cuda or cuda:N for every row"
    )
    parser.add_argument("--warmup", type=_count, default=3, help="untimed calls after the first one (default: 3)")
    parser.add_argument("--runs", type=_positive, default=20, help="timed calls per row (default: 20)")
    parser.add_argument(
        "--stage-runs",
        type=_count,
        default=None,
        help="calls timed stage by stage for the pre/infer/post split (default: --runs)",
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="interleaved",
        help="interleaved (default): all rows stay loaded and take turns call by call, so "
        "machine noise hits every row alike; sequential: one row at a time (less memory)",
    )
    parser.add_argument(
        "--max-abs-diff",
        type=float,
        default=2.0,
        help="PASS needs the uint8 max abs diff vs torch <= this (default: 2)",
    )
    parser.add_argument(
        "--min-psnr", type=float, default=45.0, help="PASS needs the PSNR vs torch >= this many dB (default: 45)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one step (load, or one call) may take before its row is marked hung",
    )
    parser.add_argument("--note", default="", help="a sentence about the machine's state for the record")
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--md", dest="md_path", metavar="PATH", help="write the results as a Markdown table")
    parser.add_argument("--plot", dest="plot_path", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    add_pipeline_arguments(parser, scale_flag="--model-scale")
