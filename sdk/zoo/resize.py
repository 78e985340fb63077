"""Bicubic upsampling whose factor is a tensor, so that it survives ONNX export as a graph input.

``nn.Upsample(scale_factor=3)`` and ``F.interpolate(x, scale_factor=s.item())`` both turn the factor
into a Python number while tracing, and the exported graph then holds it as a constant: the model
gets one input and silently ignores any other factor. Wrapping the resize in an autograd Function
with a ``symbolic`` lets us emit the ONNX ``Resize`` ourselves, with its ``scales`` wired to the
``factor`` input = [1, 1, s, s].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The ONNX Resize attributes that reproduce torch's bicubic (align_corners=False): torch maps output
# pixel centres with half-pixel offsets except for length-1 axes (pytorch_half_pixel) and uses the
# Keys kernel with a = -0.75 (PIL and MATLAB use -0.5).
RESIZE_ATTRIBUTES = {
    "mode_s": "cubic",
    "coordinate_transformation_mode_s": "pytorch_half_pixel",
    "cubic_coeff_a_f": -0.75,
    "nearest_mode_s": "floor",
}


def _scales_of(factor: torch.Tensor) -> tuple[float, float]:
    if factor.numel() != 4:
        raise ValueError(f"factor must be [1, 1, s, s], got shape {tuple(factor.shape)}")
    _, _, sh, sw = (float(v) for v in factor.detach().reshape(-1).tolist())
    return sh, sw


class _RuntimeBicubic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        # Reading the factor as numbers is fine here: during export the symbolic below replaces this
        # whole function, so nothing of its body is traced.
        sh, sw = _scales_of(factor)
        out = F.interpolate(image, scale_factor=(sh, sw), mode="bicubic", align_corners=False)
        ctx.geometry = (tuple(out.shape[-2:]), tuple(image.shape), sh, sw)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        out_size, in_shape, sh, sw = ctx.geometry
        grad_in = None
        if ctx.needs_input_grad[0]:
            grad_in = torch.ops.aten.upsample_bicubic2d_backward(
                grad_out.contiguous(), list(out_size), list(in_shape), False, sh, sw
            )
        return grad_in, None  # the factor is a shape parameter, not something to learn

    @staticmethod
    def symbolic(g, image, factor):
        # Resize-11 takes (X, roi, scales[, sizes]); roi is unused outside tf_crop_and_resize but
        # must be present, so it is an empty constant.
        roi = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        return g.op("Resize", image, roi, factor, **RESIZE_ATTRIBUTES)


def runtime_bicubic(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Upsample NCHW ``image`` bicubically by ``factor`` = [1, 1, s, s] (a float32 tensor)."""
    return _RuntimeBicubic.apply(image, factor)


def scale_factor_tensor(scale: float) -> torch.Tensor:
    """The ``factor`` input for an integer or fractional scale."""
    return torch.tensor([1.0, 1.0, float(scale), float(scale)], dtype=torch.float32)
