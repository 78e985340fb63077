"""What a model needs: its pipeline spec, where each field came from, and the check against the graph.

A field comes from one of four places, the first that has it winning:

- ``declared``: the ``pipeline={...}`` argument of the Predictor (or the CLI's pipeline options);
- ``metadata``: the JSON in the model's ``metadata_props`` under ``sdk.pipeline`` - MMDeploy's
  ``pipeline.json`` idea without a second file to lose (``sdk annotate`` writes it);
- ``inferred``: read from the graph (input names, layout, scale) or assumed from the channel count
  (colour, value range) - the guesses that :func:`warn_about_guesses` reports once at load;
- ``default``: fields that have a neutral value (an output range equal to the input's, no
  multiple-of constraint).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .color import CHANNELS, COLORS
from .errors import InputError, ModelError
from .graph.inputs import (
    FLOAT_DTYPES,
    image_input,
    is_float,
    layout_is_ambiguous,
    layout_of,
    looks_like_scales,
    spatial,
)
from .graph.scale import fixed_scale_of

if TYPE_CHECKING:
    from .model import Model

log = logging.getLogger(__name__)

PIPELINE_KEY = "sdk.pipeline"
LAYOUTS = ("NCHW", "NHWC")
SOURCES = ("declared", "metadata", "inferred", "default")
# Conventions that cannot be read from a graph: when these are guessed, the user is told.
CONVENTIONS = ("color", "value_range", "layout")


@dataclass(frozen=True)
class PipelineSpec:
    """What the model expects and returns.

    color: the image tensor's colour (see :mod:`sdk.color`): "rgb", "bgr", "y" (BT.601 luma, chroma
        upscaled outside the model) or "gray" (a grayscale network).
    value_range: (low, high) of the input tensor for pixel values 0 and 255.
    output_range: the same for the output, when it differs (None: equal to value_range).
    layout: "NCHW" or "NHWC", for input and output alike.
    image_input / scale_input: input names; scale_input (Resize's scales [1, 1, s, s]) is None for
        a fixed-scale model.
    scale: the fixed factor (1 for restoration nets), or None when the scale is given at run time.
    multiple_of: H and W must be multiples of this; inputs are reflect-padded and the output cropped.
    """

    task: str = "super_resolution"
    color: str = "rgb"
    value_range: tuple[float, float] = (0.0, 255.0)
    output_range: tuple[float, float] | None = None
    layout: str = "NCHW"
    image_input: str = "input"
    scale_input: str | None = None
    scale: int | None = None
    multiple_of: int = 1
    version: int = 1

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ModelError(f"pipeline colour {self.color!r} is not one of {', '.join(COLORS)}")
        if self.layout not in LAYOUTS:
            raise ModelError(f"pipeline layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        object.__setattr__(self, "value_range", _range("value_range", self.value_range))
        if self.output_range is not None:
            object.__setattr__(self, "output_range", _range("output_range", self.output_range))
        if self.scale is not None:
            object.__setattr__(self, "scale", _whole("scale", self.scale, 1))
        object.__setattr__(self, "multiple_of", _whole("multiple_of", self.multiple_of, 1))
        if (self.scale is None) == (self.scale_input is None):
            raise ModelError("a pipeline needs exactly one of a fixed 'scale' or a runtime 'scale_input'")

    @property
    def channels(self) -> int:
        """Channels of the model's image input: 3 for rgb/bgr, 1 for y/gray."""
        return CHANNELS[self.color]

    @property
    def out_range(self) -> tuple[float, float]:
        """The output's value range: ``output_range``, or ``value_range`` when none was given."""
        return self.output_range if self.output_range is not None else self.value_range

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, as ``sdk annotate`` writes them into a model's metadata."""
        values = asdict(self)
        # Fields at their neutral value are left out, so files stay readable by older SDKs.
        for name in ("output_range", "multiple_of"):
            if values[name] == _DEFAULTS[name]:
                del values[name]
        return values

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON (keys sorted): the text of the model's ``sdk.pipeline`` metadata."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PipelineSpec:
        """The spec that :meth:`to_json` wrote; a ModelError saying what is wrong with any other text."""
        return cls(**_metadata_fields(text))


FIELDS = tuple(f.name for f in fields(PipelineSpec))
_DEFAULTS = {f.name: f.default for f in fields(PipelineSpec)}
DECLARABLE = tuple(name for name in FIELDS if name != "version")


def _range(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelError(f"pipeline {name} must be two numbers (low, high), e.g. [0, 1]; got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low == high:
        raise ModelError(f"pipeline {name} ({low}, {high}) must be two different finite numbers, e.g. [0, 1]")
    return (low, high)


def _whole(name: str, value: Any, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer))
        or value != int(value)
        or value < minimum
    ):
        raise ModelError(f"pipeline {name} must be a whole number >= {minimum}; got {value!r}")
    return int(value)


def _metadata_fields(text: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ModelError(f"the model's {PIPELINE_KEY!r} metadata is not valid: {exc}") from exc
    if not isinstance(values, dict):
        raise ModelError(f"the model's {PIPELINE_KEY!r} metadata is not valid: a JSON object is expected")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ModelError(
            f"the model's {PIPELINE_KEY!r} metadata is not valid: unknown field(s) {unknown}; "
            f"the fields are {', '.join(FIELDS)}"
        )
    return values


# -- where each field comes from ------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """A spec and, for each of its fields, the source it came from (one of SOURCES)."""

    spec: PipelineSpec
    sources: Mapping[str, str] = field(default_factory=dict)
    # The conventions that were assumed rather than declared, read from the file or evident from
    # the graph (a layout is evident when only one axis can hold the channels).
    guesses: tuple[str, ...] = ()


def resolve(model: Model, declared: Mapping[str, Any] | PipelineSpec | None = None) -> Resolution:
    """The spec a model runs with: declared fields over its metadata over what the graph says."""
    given = check_declared(declared)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if PIPELINE_KEY in model.metadata:
        for name, value in _metadata_fields(model.metadata[PIPELINE_KEY]).items():
            values[name], sources[name] = value, "metadata"
    for name, value in given.items():
        values[name], sources[name] = value, "declared"
        # Naming one of the two ways to scale rules out the other.
        other = {"scale": "scale_input", "scale_input": "scale"}.get(name)
        if other and value is not None and other not in given:
            values[other], sources[other] = None, "declared"
    guesses = _infer_missing(model, values, sources)
    try:
        spec = PipelineSpec(**values)
    except ModelError as exc:
        if any(s == "declared" for s in sources.values()):
            raise InputError(f"pipeline=: {exc}") from exc
        raise
    check_against_model(spec, model)
    return Resolution(spec, {name: sources.get(name, "default") for name in FIELDS}, guesses)


def check_declared(declared: Mapping[str, Any] | PipelineSpec | None) -> dict[str, Any]:
    """The ``pipeline=`` dict, checked for its field names (values are checked with the spec)."""
    if declared is None:
        return {}
    if isinstance(declared, PipelineSpec):
        return {name: value for name, value in asdict(declared).items() if name != "version"}
    if not isinstance(declared, Mapping):
        raise InputError(
            f"pipeline= must be a dict of pipeline fields such as {{'value_range': (0, 1)}}, "
            f"not {type(declared).__name__}"
        )
    unknown = sorted(set(declared) - set(DECLARABLE))
    if unknown:
        raise InputError(f"pipeline= has unknown field(s) {unknown}; the fields are {', '.join(DECLARABLE)}")
    values = dict(declared)
    if isinstance(values.get("layout"), str):
        values["layout"] = values["layout"].upper()
    if isinstance(values.get("color"), str):
        values["color"] = values["color"].lower()
    # The two that steer inference are checked now; the rest are checked with the whole spec.
    for name, allowed in (("color", COLORS), ("layout", LAYOUTS)):
        if name in values and values[name] not in allowed:
            raise InputError(f"pipeline=: {name} {values[name]!r} is not one of {', '.join(allowed)}")
    return values


def _infer_missing(model: Model, values: dict[str, Any], sources: dict[str, str]) -> tuple[str, ...]:
    """Fill the fields nobody gave from the graph; returns the conventions that had to be assumed."""
    assumed = []

    def infer(name: str, value: Any, guess: bool = False) -> None:
        if name not in values:
            values[name], sources[name] = value, "inferred"
            if guess:
                assumed.append(name)

    image = image_input(model, values.get("image_input"), values.get("layout"))
    infer("image_input", image.name)
    infer("layout", layout_of(image) or "NCHW", guess=layout_is_ambiguous(image))
    channels = image.shape[1 if values["layout"] == "NCHW" else 3]
    # Three channels: RGB in 0..255 (the MMDeploy SRCNN); one: the Y of YCbCr in 0..1 (the PyTorch
    # ESPCN tutorial). Most public models take 0..1 - hence the warning when this is a guess.
    infer("color", "y" if channels == 1 else "rgb", guess=True)
    infer("value_range", (0.0, 255.0) if CHANNELS.get(values["color"], 3) == 3 else (0.0, 1.0), guess=True)
    if "scale_input" not in values and "scale" not in values:
        scales = [i for i in model.inputs if i.name != image.name and looks_like_scales(i)]
        if scales:
            infer("scale_input", scales[0].name)
            infer("scale", None)
    if values.get("scale_input") is None and values.get("scale") is None:
        scale = fixed_scale_of(model, image.name, values["layout"])
        if scale is None:
            raise ModelError(
                f"cannot tell by how much {model.name} upscales: it has no scale input and its graph does not "
                "say. Declare it (1 for a restoration net): Predictor(..., pipeline={'scale': 4}) or "
                "`sdk annotate MODEL -o OUT.onnx --scale 4`"
            )
        infer("scale", scale)
        infer("scale_input", None)
    return tuple(name for name in CONVENTIONS if name in assumed)


# -- the spec against the graph -------------------------------------------------------------------


def check_against_model(spec: PipelineSpec, model: Model) -> None:
    """ModelError unless the model's inputs and output fit the spec."""
    image = model.input(spec.image_input)
    channel_axis = 1 if spec.layout == "NCHW" else 3
    wanted = f"N x {spec.channels} x H x W" if spec.layout == "NCHW" else f"N x H x W x {spec.channels}"
    if len(image.shape) != 4 or (
        isinstance(image.shape[channel_axis], int) and image.shape[channel_axis] != spec.channels
    ):
        raise ModelError(
            f"{model.name}: input {image.name!r} has shape {list(image.shape)}, but its pipeline "
            f"({spec.color}, {spec.layout}) needs {wanted}; declare the right color/layout"
        )
    if not is_float(image.dtype):
        raise ModelError(
            f"{model.name}: input {image.name!r} is {image.dtype}; the pipeline feeds "
            f"{', '.join(FLOAT_DTYPES)} images only"
        )
    if spec.scale_input is not None:
        model.input(spec.scale_input)
    extra = {i.name for i in model.inputs} - {spec.image_input, spec.scale_input}
    if extra:
        raise ModelError(
            f"{model.name} has inputs the pipeline cannot fill: {sorted(extra)}; use Predictor.run for raw feeds"
        )
    output = model.outputs[0]
    if len(output.shape) != 4:
        raise ModelError(
            f"{model.name}: output {output.name!r} has shape {list(output.shape)}; an image ({wanted}) is expected"
        )
    out_channels = output.shape[channel_axis]
    if isinstance(out_channels, int) and out_channels != spec.channels:
        raise ModelError(
            f"{model.name}: output {output.name!r} has {out_channels} channels at axis {channel_axis}, "
            f"but its pipeline ({spec.color}, {spec.layout}) needs {spec.channels}; declare the right "
            "color/layout"
        )
    static = static_size(spec, model)
    if static and spec.multiple_of > 1 and any(d % spec.multiple_of for d in static):
        raise ModelError(
            f"{model.name} takes {static[0]}x{static[1]} inputs, which are not multiples of "
            f"multiple_of={spec.multiple_of}; fix the declared multiple_of"
        )


def static_size(spec: PipelineSpec, model: Model) -> tuple[int, int] | None:
    """(h, w) of a model whose image input has fixed spatial dimensions, else None."""
    h, w = spatial(model.input(spec.image_input).shape, spec.layout)
    return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


# -- telling the user ---------------------------------------------------------------------------


def describe_guesses(resolution: Resolution, model_name: str) -> str | None:
    """The one warning for a model whose conventions were assumed; None when nothing was."""
    guessed = resolution.guesses
    if not guessed:
        return None
    spec = resolution.spec
    assumed = {
        "color": f"colour {spec.color}",
        "value_range": f"values {_show(spec.value_range)}" + ("" if spec.output_range else " in and out"),
        "layout": f"layout {spec.layout}",
    }
    example = {
        "color": f"'color': '{spec.color}'",
        "value_range": "'value_range': (0, 1)",
        "layout": f"'layout': '{spec.layout}'",
    }
    flags = {"color": f"--color {spec.color}", "value_range": "--value-range 0 1", "layout": f"--layout {spec.layout}"}
    return (
        f"{model_name} has no {PIPELINE_KEY!r} metadata; assumed {', '.join(assumed[g] for g in guessed)}. "
        "If that is wrong the pictures will be wrong (most public models take RGB 0..1). Declare it: "
        f"Predictor(..., pipeline={{{', '.join(example[g] for g in guessed)}}}) or "
        f"`sdk annotate MODEL -o OUT.onnx {' '.join(flags[g] for g in guessed)}`"
    )


def warn_about_guesses(resolution: Resolution, model_name: str) -> None:
    message = describe_guesses(resolution, model_name)
    if message:
        log.warning("%s", message)


def _show(value_range: tuple[float, float]) -> str:
    return "..".join(f"{v:g}" for v in value_range)
