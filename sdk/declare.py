"""Declaring a model's pipeline on the command line: the same fields for every command.

``sdk info``, ``sdk annotate``, ``sdk upscale`` and ``sdk bench`` call :func:`add_pipeline_arguments`
on their parser and pass :func:`pipeline_from_args`'s dict as ``Predictor(..., pipeline=...)``.
"""

from __future__ import annotations

import argparse

from .color import COLORS
from .spec import LAYOUTS


def add_pipeline_arguments(parser: argparse.ArgumentParser, scale_flag: str = "--scale") -> None:
    """Add the pipeline fields. Commands whose ``--scale`` is the factor to run at pass another
    ``scale_flag`` (``--model-scale``) for the model's own fixed factor."""
    group = parser.add_argument_group("pipeline (override or complete what the model file says)")
    group.add_argument(
        "--color",
        choices=COLORS,
        type=str.lower,
        default=None,
        help="the model's colour: rgb, bgr, y (BT.601 luma, colour kept) or gray (a grayscale net)",
    )
    group.add_argument(
        "--value-range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=None,
        help="input tensor values for pixel values 0 and 255, e.g. 0 1 (most public models) or 0 255",
    )
    group.add_argument(
        "--output-range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=None,
        help="the output's, when it differs from the input's (e.g. -1 1 out of a tanh)",
    )
    group.add_argument("--layout", choices=LAYOUTS, type=str.upper, default=None, help="NCHW (default) or NHWC")
    group.add_argument(
        scale_flag,
        dest="pipeline_scale",
        type=int,
        default=None,
        metavar="S",
        help="the model's fixed upscaling factor (1 for restoration nets)",
    )
    group.add_argument(
        "--scale-input",
        default=None,
        metavar="NAME",
        help="the input that takes the factor at run time (Resize's [1, 1, s, s])",
    )
    group.add_argument("--image-input", default=None, metavar="NAME", help="the input that takes the image")
    group.add_argument(
        "--multiple-of",
        type=int,
        default=None,
        metavar="K",
        help="H and W must be multiples of K (window attention, U-Nets): padded, then cropped",
    )


def pipeline_from_args(args: argparse.Namespace) -> dict | None:
    """The declared fields of parsed arguments as a ``pipeline=`` dict (None when none was given)."""
    given = {
        "color": getattr(args, "color", None),
        "value_range": getattr(args, "value_range", None),
        "output_range": getattr(args, "output_range", None),
        "layout": getattr(args, "layout", None),
        "scale": getattr(args, "pipeline_scale", None),
        "scale_input": getattr(args, "scale_input", None),
        "image_input": getattr(args, "image_input", None),
        "multiple_of": getattr(args, "multiple_of", None),
    }
    declared = {name: value for name, value in given.items() if value is not None}
    return declared or None
