"""How a model tells the SDK its pre- and post-processing.

The description travels inside the ONNX file, in ``metadata_props`` under the key ``sdk.pipeline``,
as JSON - the same idea as MMDeploy's ``pipeline.json`` but without a second file to lose. Models
without it (a ``srcnn3.onnx`` straight from the tutorial) get a description inferred from their
inputs; see :func:`sdk.processing.infer_spec`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .errors import ModelError

PIPELINE_KEY = "sdk.pipeline"
COLORS = ("rgb", "bgr", "y")


@dataclass(frozen=True)
class PipelineSpec:
    """What the model expects and returns.

    color: channel order of the image tensor; "y" means the luma of full-range BT.601 YCbCr only
        (Y = 0.299 R + 0.587 G + 0.114 B, what PIL's ``convert("YCbCr")`` gives), with Cb and Cr
        upscaled bicubically outside the model (the ESPCN tutorial's scheme).
    value_range: (low, high) of the tensor values for pixel values 0..255.
    image_input / scale_input: input names; scale_input is None for a fixed-scale model.
    scale: the fixed upscaling factor, or None when the scale is given at run time.
    """

    task: str = "super_resolution"
    color: str = "rgb"
    value_range: tuple[float, float] = (0.0, 255.0)
    layout: str = "NCHW"
    image_input: str = "input"
    scale_input: str | None = None
    scale: int | None = None
    version: int = 1

    def __post_init__(self):
        if self.color not in COLORS:
            raise ModelError(f"pipeline colour {self.color!r} is not one of {', '.join(COLORS)}")
        if self.layout != "NCHW":
            raise ModelError(f"pipeline layout {self.layout!r} is not supported; export the model as NCHW")
        if (self.scale is None) == (self.scale_input is None):
            raise ModelError("a pipeline needs exactly one of a fixed 'scale' or a runtime 'scale_input'")
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PipelineSpec":
        try:
            fields = json.loads(text)
            return cls(**fields)
        except ModelError:
            raise
        except (ValueError, TypeError) as exc:
            raise ModelError(f"the model's {PIPELINE_KEY!r} metadata is not valid: {exc}") from exc
