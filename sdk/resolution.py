"""Where each field of a model's pipeline spec comes from, and the check of the spec against the graph.

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

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .color import CHANNELS, COLORS
from .errors import InputError, ModelError
from .graph.inputs import FLOAT_DTYPES, image_input, is_float, layout_is_ambiguous, layout_of, looks_like_scales
from .graph.scale import fixed_scale_of
from .spec import DECLARABLE, FIELDS, LAYOUTS, PIPELINE_KEY, PipelineSpec, metadata_fields, static_size

if TYPE_CHECKING:
    from .model import Model

# The logger keeps the name the docs give users to filter the guesses' warning on.
log = logging.getLogger("sdk.spec")

SOURCES = ("declared", "metadata", "inferred", "default")
# Conventions that cannot be read from a graph: when these are guessed, the user is told.
CONVENTIONS = ("color", "value_range", "layout")


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
        for name, value in metadata_fields(model.metadata[PIPELINE_KEY]).items():
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
