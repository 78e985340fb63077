"""An SRCNN-shaped runtime-scale model built with onnx.helper, for when the bundled srcnn3.onnx is
absent (a source tree whose models were never exported).

It has srcnn3's exact interface and cost - inputs `input` (N x 3 x H x W) and `factor` = [1, 1, s, s],
a cubic Resize fed by `factor`, conv 9x9 3->64, ReLU, conv 1x1 64->32, ReLU, conv 5x5 32->3 - so it
exercises the same operators and the same FLOPs. Its weights carry each colour channel straight
through (a centre tap of 1) plus small noise, so the output stays a plausible image in 0..255 and a
one-level comparison between engines means something.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RESIZE = dict(
    mode="cubic", coordinate_transformation_mode="pytorch_half_pixel", cubic_coeff_a=-0.75, nearest_mode="floor"
)


def _conv(rng, name: str, cin: int, cout: int, k: int) -> list:
    weight = (rng.standard_normal((cout, cin, k, k)) * (0.3 / np.sqrt(cin * k * k))).astype(np.float32)
    for c in range(3):
        weight[c, c, k // 2, k // 2] += 1.0
    bias = (rng.standard_normal(cout) * 0.5).astype(np.float32)
    return [numpy_helper.from_array(weight, f"{name}.weight"), numpy_helper.from_array(bias, f"{name}.bias")]


def srcnn3_graph(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = _conv(rng, "conv1", 3, 64, 9) + _conv(rng, "conv2", 64, 32, 1) + _conv(rng, "conv3", 32, 3, 5)
    inits.append(numpy_helper.from_array(np.array([], np.float32), "roi"))  # Resize-11 needs it, unused
    nodes = [
        helper.make_node("Resize", ["input", "roi", "factor"], ["upsampled"], **RESIZE),
        helper.make_node("Conv", ["upsampled", "conv1.weight", "conv1.bias"], ["h1"], pads=[4] * 4),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("Conv", ["r2", "conv3.weight", "conv3.bias"], ["output"], pads=[2] * 4),
    ]
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
        helper.make_tensor_value_info("factor", TensorProto.FLOAT, [4]),
    ]
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "out_height", "out_width"])
    model = helper.make_model(
        helper.make_graph(nodes, "srcnn3-test", inputs, [output], inits), opset_imports=[helper.make_opsetid("", 11)]
    )
    model.ir_version = 7  # what torch.onnx.export writes for opset 11; every engine reads it
    onnx.checker.check_model(model)
    return model
