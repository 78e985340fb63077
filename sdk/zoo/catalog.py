"""What the zoo offers: one card per bundled model, tying its network to its files and pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..spec import PipelineSpec
from .nets import ESPCN, SRCNN, RuntimeScaleSRCNN
from .resize import scale_factor_tensor

WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED_MODELS_DIR = Path(__file__).parent.parent / "models"


@dataclass(frozen=True)
class ModelCard:
    name: str  # the name Predictor and the CLI know it by
    export_file: str  # the file name `sdk export` writes (the tutorials' names)
    family: str  # which checkpoints fit: "srcnn" or "espcn"
    spec: PipelineSpec
    build: Callable[[bool], nn.Module]  # residual -> fresh network
    train_scales: tuple[int, ...]  # scales the network is trained and verified at
    summary: str

    @property
    def bundled_file(self) -> Path:
        return BUNDLED_MODELS_DIR / f"{self.name}.onnx"

    @property
    def weights_file(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.npz"

    @property
    def value_scale(self) -> float:
        """The tensor value of a white pixel (255 for SRCNN as in the tutorial, 1 for ESPCN)."""
        return self.spec.value_range[1]

    @property
    def channels(self) -> int:
        return 1 if self.spec.color == "y" else 3

    @property
    def runtime_scale(self) -> bool:
        return self.spec.scale_input is not None

    def example_inputs(self, image: torch.Tensor, scale: int) -> tuple[torch.Tensor, ...]:
        """The positional arguments of the network for an NCHW ``image`` at ``scale``."""
        if self.runtime_scale:
            return (image, scale_factor_tensor(scale))
        return (image,)

    def input_names(self) -> list[str]:
        names = [self.spec.image_input]
        if self.runtime_scale:
            names.append(self.spec.scale_input)
        return names


CARDS: dict[str, ModelCard] = {
    card.name: card
    for card in (
        ModelCard(
            name="srcnn",
            export_file="srcnn.onnx",
            family="srcnn",
            spec=PipelineSpec(color="rgb", value_range=(0, 255), image_input="input", scale=3),
            build=lambda residual: SRCNN(scale=3, residual=residual),
            train_scales=(3,),
            summary="SRCNN 9-1-5 (64/32 filters), bicubic x3 built in, RGB 0..255",
        ),
        ModelCard(
            name="srcnn3",
            export_file="srcnn3.onnx",
            family="srcnn",
            spec=PipelineSpec(color="rgb", value_range=(0, 255), image_input="input", scale_input="factor"),
            build=lambda residual: RuntimeScaleSRCNN(residual=residual),
            train_scales=(2, 3, 4),
            summary="SRCNN 9-1-5 (64/32 filters), bicubic upsampling by the runtime input factor=[1,1,s,s], RGB 0..255",
        ),
        ModelCard(
            name="espcn",
            export_file="super_resolution.onnx",
            family="espcn",
            spec=PipelineSpec(color="y", value_range=(0, 1), image_input="input", scale=3),
            build=lambda residual: ESPCN(scale=3, residual=residual),
            train_scales=(3,),
            summary="ESPCN sub-pixel network x3 on the BT.601 Y channel (full range), values 0..1",
        ),
    )
}


def card(name: str) -> ModelCard:
    from ..errors import ModelError

    try:
        return CARDS[name]
    except KeyError:
        raise ModelError(f"the zoo has no model {name!r}; choose one of {', '.join(CARDS)}") from None
