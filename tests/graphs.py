"""Small SRCNN-shaped ONNX graphs built with onnx.helper, so core tests need neither torch nor the
bundled models."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _conv(rng, name: str, cin: int, cout: int, k: int) -> list:
    weight = (rng.standard_normal((cout, cin, k, k)) * (0.5 / np.sqrt(cin * k * k))).astype(np.float32)
    bias = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    return [numpy_helper.from_array(weight, f"{name}_w"), numpy_helper.from_array(bias, f"{name}_b")]


def _body(source: str, channels: int, rng) -> tuple[list, list]:
    """conv 3x3 -> relu -> conv 3x3, plus a global residual: an SRCNN in miniature."""
    inits = _conv(rng, "c1", channels, 8, 3) + _conv(rng, "c2", 8, channels, 3)
    nodes = [
        helper.make_node("Conv", [source, "c1_w", "c1_b"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "c2_w", "c2_b"], ["d"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", [source, "d"], ["output"]),
    ]
    return nodes, inits


def _resize(inputs: list[str]):
    return helper.make_node(
        "Resize",
        inputs,
        ["up"],
        mode="cubic",
        coordinate_transformation_mode="pytorch_half_pixel",
        cubic_coeff_a=-0.75,
        nearest_mode="floor",
    )


def _model(nodes, inputs, inits, metadata: dict | None = None, output_channels: int = 3) -> onnx.ModelProto:
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", output_channels, "H", "W"])
    graph = helper.make_graph(nodes, "srcnn-like", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model


def runtime_scale_model(seed: int = 0, metadata: dict | None = None) -> onnx.ModelProto:
    """Like the tutorial's srcnn3.onnx: inputs `input` and `factor` = [1, 1, s, s]."""
    rng = np.random.default_rng(seed)
    body, inits = _body("up", 3, rng)
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"]),
        helper.make_tensor_value_info("factor", TensorProto.FLOAT, [4]),
    ]
    return _model([_resize(["input", "roi", "factor"]), *body], inputs, inits + [roi], metadata)


def fixed_scale_model(scale: int = 3, seed: int = 0, metadata: dict | None = None) -> onnx.ModelProto:
    """Like the tutorial's srcnn.onnx: one input, a constant x`scale` cubic Resize."""
    rng = np.random.default_rng(seed)
    body, inits = _body("up", 3, rng)
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    scales = numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])]
    return _model([_resize(["input", "roi", "scales"]), *body], inputs, inits + [roi, scales], metadata)


def y_channel_model(scale: int = 3, seed: int = 0) -> onnx.ModelProto:
    """Like the ESPCN tutorial: one Y channel in 0..1, conv to s^2 channels, DepthToSpace."""
    rng = np.random.default_rng(seed)
    # Near-identity weights (each sub-pixel copies its source pixel, plus a little noise), so the
    # output stays a plausible image whose colours survive the YCbCr round trip.
    weight = (rng.standard_normal((scale * scale, 1, 3, 3)) * 0.02).astype(np.float32)
    weight[:, 0, 1, 1] += 1.0
    # A bias (0.04 = about 10 grey levels) makes the model affine, not linear: a pipeline that gets
    # the 0..1 value range wrong then shows, where a linear model would cancel the error out.
    bias = np.full(scale * scale, 0.04, np.float32)
    inits = [numpy_helper.from_array(weight, "c1_w"), numpy_helper.from_array(bias, "c1_b")]
    nodes = [
        helper.make_node("Conv", ["input", "c1_w", "c1_b"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["h"], ["output"], blocksize=scale, mode="CRD"),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, "h", "w"])]
    return _model(nodes, inputs, inits, output_channels=1)


def no_image_model() -> onnx.ModelProto:
    """A model whose only input is a flat vector: nothing the image pipeline can feed."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "flat", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    return model


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def identity_model() -> onnx.ModelProto:
    """Returns its input (scale 1, RGB 0..255): what goes in comes out, so a video's round trip shows
    only what decoding, colour conversion and encoding do."""
    import json

    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])]
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    declared = {"color": "rgb", "value_range": [0, 255], "scale": 1}
    model.metadata_props.add(key="sdk.pipeline", value=json.dumps(declared))
    onnx.checker.check_model(model)
    return model


def community_fp16_model(scale: int = 2, seed: int = 0) -> onnx.ModelProto:
    """What the community ships (OpenModelDB style): RGB in 0..1, float16 throughout, PReLU, a
    sub-pixel convolution (DepthToSpace) plus a nearest-upscaled residual, opset 17, dynamic sizes."""
    return community_model(scale, seed, np.float16)


def community_model(scale: int = 2, seed: int = 0, dtype=np.float32) -> onnx.ModelProto:
    """Real-ESRGAN Compact in miniature, as exported (float32 unless ``dtype``): RGB in 0..1, nothing
    in the file says so, PReLU, a sub-pixel convolution (DepthToSpace) plus a nearest-upscaled
    residual, opset 17, dynamic sizes."""
    rng = np.random.default_rng(seed)
    features = 16
    w1 = (rng.standard_normal((features, 3, 3, 3)) * 0.2).astype(dtype)
    b1 = (rng.standard_normal(features) * 0.05).astype(dtype)
    slope = np.full((features, 1, 1), 0.25, dtype)
    w2 = (rng.standard_normal((3 * scale * scale, features, 3, 3)) * 0.02).astype(dtype)
    b2 = np.zeros(3 * scale * scale, dtype)
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(slope, "slope"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b2, "b2"),
        numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["h", "slope"], ["a"]),
        helper.make_node("Conv", ["a", "w2", "b2"], ["d"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["d"], ["detail"], blocksize=scale, mode="CRD"),
        helper.make_node("Resize", ["input", "", "scales"], ["base"], mode="nearest"),
        helper.make_node("Add", ["base", "detail"], ["output"]),
    ]
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        nodes,
        "community",
        [helper.make_tensor_value_info("input", element, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", element, ["n", 3, "H", "W"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def deep_model(layers: int = 150, channels: int = 16, seed: int = 0) -> onnx.ModelProto:
    """Scale 1, RGB 0..255: ``layers`` 3x3 convolutions of ``channels`` in a row. Each node is short and
    the whole run long, so an engine that stops between nodes (ONNX Runtime's terminate flag) shows it."""
    import json

    rng = np.random.default_rng(seed)
    inits = _conv(rng, "first", 3, channels, 3) + _conv(rng, "last", channels, 3, 3)
    nodes = [helper.make_node("Conv", ["input", "first_w", "first_b"], ["h0"], pads=[1, 1, 1, 1])]
    for i in range(layers):
        inits += _conv(rng, f"c{i}", channels, channels, 3)
        nodes.append(helper.make_node("Conv", [f"h{i}", f"c{i}_w", f"c{i}_b"], [f"h{i + 1}"], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Conv", [f"h{layers}", "last_w", "last_b"], ["output"], pads=[1, 1, 1, 1]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])]
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    model = helper.make_model(
        helper.make_graph(nodes, "deep", inputs, [output], inits), opset_imports=[helper.make_opsetid("", 11)]
    )
    model.ir_version = 7
    model.metadata_props.add(
        key="sdk.pipeline", value=json.dumps({"color": "rgb", "value_range": [0, 255], "scale": 1})
    )
    onnx.checker.check_model(model)
    return model
