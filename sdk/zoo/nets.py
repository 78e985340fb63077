"""PyTorch definitions of the three bundled networks.

The layer names (``conv1``..``conv3`` for SRCNN, ``conv1``..``conv4`` for ESPCN) are those of the
MMDeploy and PyTorch tutorials and of MMEditing's SRCNN, so their checkpoints load by name.

``residual=True`` adds the bicubic upsample to the network's output: the convolutions then learn
only the missing detail, which trains an order of magnitude faster on a CPU budget (measured on the
2-core build machine: +1.27 dB over bicubic at x3 after 2.5 minutes, against +0.13 dB for the same
layers without it). It adds one Add node and no weights. ``residual=False`` is the tutorials' exact
architecture, which foreign checkpoints (MMEditing's SRCNN, the PyTorch tutorial's ESPCN) load into.
"""

from __future__ import annotations

import torch
from torch import nn

from .resize import runtime_bicubic


class _SRCNNLayers(nn.Module):
    """SRCNN 9-1-5 with 64 and 32 filters, applied to an image already upsampled to the output size."""

    def __init__(self, residual: bool):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(3, 64, kernel_size=9, padding=4)
        self.conv2 = nn.Conv2d(64, 32, kernel_size=1, padding=0)
        self.conv3 = nn.Conv2d(32, 3, kernel_size=5, padding=2)
        self.relu = nn.ReLU()

    def refine(self, upsampled: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(upsampled))
        out = self.relu(self.conv2(out))
        out = self.conv3(out)
        return upsampled + out if self.residual else out


class SRCNN(_SRCNNLayers):
    """SRCNN with its upsampling factor fixed at construction (exported as a constant)."""

    def __init__(self, scale: int = 3, residual: bool = True):
        super().__init__(residual)
        self.scale = scale
        self.img_upsampler = nn.Upsample(scale_factor=scale, mode="bicubic", align_corners=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.refine(self.img_upsampler(image))


class RuntimeScaleSRCNN(_SRCNNLayers):
    """SRCNN whose factor is a second input ``factor`` = [1, 1, s, s]: one set of weights for every s."""

    def forward(self, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return self.refine(runtime_bicubic(image, factor))


class ESPCN(nn.Module):
    """The PyTorch super-resolution tutorial's sub-pixel network on the Y channel (values 0..1)."""

    def __init__(self, scale: int = 3, residual: bool = False):
        super().__init__()
        self.scale = scale
        self.residual = residual
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(64, 32, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(32, scale**2, kernel_size=3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(scale)
        if residual:
            self.img_upsampler = nn.Upsample(scale_factor=scale, mode="bicubic", align_corners=False)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        # Orthogonal init with the ReLU gain, as the tutorial does; the last layer gets gain 1
        # because no ReLU follows it.
        gain = nn.init.calculate_gain("relu")
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.orthogonal_(conv.weight, gain)
        nn.init.orthogonal_(self.conv4.weight)
        if self.residual:
            # Start from the bicubic picture rather than from noise around it.
            self.conv4.weight.data.mul_(0.1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(image))
        out = self.relu(self.conv2(out))
        out = self.relu(self.conv3(out))
        out = self.pixel_shuffle(self.conv4(out))
        return self.img_upsampler(image) + out if self.residual else out


def rescale_values(model: nn.Module, factor: float) -> nn.Module:
    """Make a network trained on values 0..1 work on values 0..``factor`` (or back, with 1/factor).

    Exact for these networks: convolutions and ReLU commute with a positive scale once every bias is
    scaled too, and the upsampling and the residual are linear. We train SRCNN on 0..1 (Adam's step
    size suits weights and biases of that range) and ship it on 0..255, like the tutorial's model.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and module.bias is not None:
                module.bias.mul_(factor)
    return model
