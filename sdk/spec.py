"""What a model needs: its pipeline spec (the record, its fields checked, and its JSON form in a
model's metadata). Where each field of a model's spec comes from is :mod:`sdk.resolution`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .color import CHANNELS, COLORS
from .errors import ModelError
from .graph.inputs import spatial

if TYPE_CHECKING:
    from .model import Model

PIPELINE_KEY = "sdk.pipeline"
LAYOUTS = ("NCHW", "NHWC")


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
        return cls(**metadata_fields(text))


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


def metadata_fields(text: str) -> dict[str, Any]:
    """The fields of a model's ``sdk.pipeline`` metadata (JSON), their names checked; a ModelError otherwise."""
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


def static_size(spec: PipelineSpec, model: Model) -> tuple[int, int] | None:
    """(h, w) of a model whose image input has fixed spatial dimensions, else None."""
    h, w = spatial(model.input(spec.image_input).shape, spec.layout)
    return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None
