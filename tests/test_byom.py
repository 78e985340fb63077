"""Bring your own model: small PyTorch nets in each community convention, exported the way their
users export them (no sdk metadata), run through the SDK and compared with PyTorch itself."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the byom tests export PyTorch nets: pip install torch==2.13.0 (the 'export' extra)"
)
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import sdk  # noqa: E402
from sdk.annotate import annotate  # noqa: E402
from sdk.model import BUNDLED  # noqa: E402


class Net(nn.Module):
    """A tiny SR net: GELU and a sigmoid attention (non-homogeneous: a wrong value range shows),
    or PReLU (homogeneous: a wrong range shows only through the biases); a nearest-neighbour skip,
    so that the output is a plausible picture; an optional tanh for -1..1 outputs."""

    def __init__(
        self,
        scale: int = 4,
        channels: int = 3,
        act: str = "attention",
        tanh: bool = False,
        seed: int = 0,
        gain: float = 0.3,
    ):
        super().__init__()
        torch.manual_seed(seed)
        self.scale, self.act, self.tanh, self.gain = scale, act, tanh, gain
        self.head = nn.Conv2d(channels, 8, 3, padding=1)
        self.attention = nn.Conv2d(8, 8, 1)
        self.prelu = nn.PReLU(8, init=0.2)
        self.tail = nn.Conv2d(8, channels * scale * scale, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        if self.act == "attention":
            h = F.gelu(h)
            h = h * torch.sigmoid(self.attention(h))
        else:
            h = self.prelu(h)
        body = self.tail(h)
        if self.scale > 1:
            body = F.pixel_shuffle(body, self.scale)
            skip = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        else:
            skip = x
        out = skip + self.gain * body
        return torch.tanh(out) if self.tanh else out


class NeedsMultipleOf8(nn.Module):
    """A U-Net in miniature: a context branch at 1/8 resolution, added back - H and W must divide by 8."""

    def __init__(self, scale: int = 2):
        super().__init__()
        torch.manual_seed(1)
        self.scale = scale
        self.context = nn.Conv2d(3, 3, 1)
        self.net = Net(scale, act="attention", seed=1)

    def forward(self, x):
        context = F.interpolate(self.context(F.avg_pool2d(x, 8)), scale_factor=8.0, mode="nearest")
        return self.net(x + 0.2 * torch.sigmoid(context))


class NHWC(nn.Module):
    """A converted TensorFlow model: N x H x W x C in and out."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def export(
    net: nn.Module,
    path,
    channels: int = 3,
    layout: str = "NCHW",
    dtype=torch.float32,
    static: tuple[int, int] | None = None,
) -> str:
    """torch.onnx.export as a user would run it: no metadata, dynamic H and W unless static."""
    net = net.eval().to(dtype)
    h, w = static or (16, 16)
    shape = (1, channels, h, w) if layout == "NCHW" else (1, h, w, channels)
    axes = {0: "n", 2: "h", 3: "w"} if layout == "NCHW" else {0: "n", 1: "h", 2: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.rand(shape, dtype=dtype),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=None if static else {"input": axes, "output": axes},
        )
    return str(path)


def reference(
    net: nn.Module,
    image: np.ndarray,
    color="rgb",
    value_range=(0, 1),
    output_range=None,
    layout="NCHW",
    pad_to: tuple[int, int] | None = None,
) -> np.ndarray:
    """What the model computes in PyTorch (float32), turned into uint8 the documented way."""
    output_range = output_range or value_range
    pixels = image.astype(np.float64)
    if color == "bgr":
        pixels = pixels[..., ::-1]
    elif color == "gray":
        pixels = (pixels @ np.array([0.299, 0.587, 0.114]))[..., None]  # ITU-R 601 luma, as PIL's "L"
    low, high = value_range
    x = torch.from_numpy(np.ascontiguousarray(low + pixels / 255.0 * (high - low), dtype=np.float32))
    x = x.permute(2, 0, 1)[None]
    h, w = x.shape[2:]
    if pad_to:
        x = F.pad(x, (0, pad_to[1] - w, 0, pad_to[0] - h), mode="reflect")
    if layout == "NHWC":
        x = x.permute(0, 2, 3, 1)
    with torch.no_grad():
        y = net.float().eval()(x)
    if layout == "NHWC":
        y = y.permute(0, 3, 1, 2)
    s = y.shape[2] // x.shape[2 if layout == "NCHW" else 1]
    y = y[0, :, : h * s, : w * s].permute(1, 2, 0).double().numpy()
    olow, ohigh = output_range
    out = np.clip(np.rint((y - olow) / (ohigh - olow) * 255.0), 0, 255).astype(np.uint8)
    if color == "bgr":
        out = out[..., ::-1]
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out


def max_diff(a, b) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def image(photo):
    return photo[:20, :24].copy()


# Each case: a net, how it was exported, the pipeline a user declares, and how PyTorch is fed.
CASES = {
    "rgb01-attention-x4": dict(net=lambda: Net(4, gain=1.0), declare={"value_range": (0, 1)}),
    "rgb01-prelu-x2": dict(net=lambda: Net(2, act="prelu"), declare={"value_range": (0, 1)}),
    "rgb-1to1-tanh-x2": dict(
        net=lambda: Net(2, tanh=True), declare={"value_range": (-1, 1)}, ref=dict(value_range=(-1, 1))
    ),
    "in01-out-1to1-x3": dict(
        net=lambda: Net(3, tanh=True),
        declare={"value_range": (0, 1), "output_range": (-1, 1)},
        ref=dict(output_range=(-1, 1)),
    ),
    "bgr01-x2": dict(net=lambda: Net(2), declare={"color": "bgr", "value_range": (0, 1)}, ref=dict(color="bgr")),
    "gray01-x2": dict(
        net=lambda: Net(2, channels=1),
        channels=1,
        declare={"color": "gray", "value_range": (0, 1)},
        ref=dict(color="gray"),
    ),
    "restoration-x1": dict(net=lambda: Net(1), declare={"value_range": (0, 1)}),
    "nhwc-x2": dict(net=lambda: NHWC(Net(2)), layout="NHWC", declare={"value_range": (0, 1)}, ref=dict(layout="NHWC")),
    "rgb255-x2": dict(net=lambda: Net(2), declare={"value_range": (0, 255)}, ref=dict(value_range=(0, 255))),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("byom")
    return {
        name: (
            case["net"](),
            export(case["net"](), folder / f"{name}.onnx", case.get("channels", 3), case.get("layout", "NCHW")),
        )
        for name, case in CASES.items()
    }


@pytest.mark.parametrize("name", list(CASES))
def test_declared_pipeline_matches_pytorch(exported, image, name):
    case = CASES[name]
    net, path = exported[name]
    predictor = sdk.Predictor(path, backend="ort-cpu", pipeline=case["declare"])
    expected = reference(net, image, **{"value_range": (0, 1), **case.get("ref", {})})
    assert max_diff(predictor(image), expected) <= 1
    # The colour order of the caller's array is independent of the model's.
    assert max_diff(predictor(np.ascontiguousarray(image[..., ::-1]), color="bgr")[..., ::-1], expected) <= 1


@pytest.mark.parametrize("name", list(CASES))
def test_annotated_copy_needs_no_hints(exported, image, name, tmp_path, caplog):
    case = CASES[name]
    net, path = exported[name]
    out = tmp_path / "annotated.onnx"
    annotate(path, out, case["declare"])
    with caplog.at_level(logging.WARNING, logger="sdk"):
        predictor = sdk.Predictor(out, backend="ort-cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert set(predictor.spec_sources.values()) <= {"metadata", "default"}
    expected = reference(net, image, **{"value_range": (0, 1), **case.get("ref", {})})
    assert max_diff(predictor(image), expected) <= 1


def test_a_wrong_value_range_shows_on_a_sigmoid_net(exported, image):
    """The failure the issue reports, so the tests above can fail: 0..1 net run as 0..255."""
    net, path = exported["rgb01-attention-x4"]
    wrong = sdk.Predictor(path, backend="ort-cpu")(image)
    assert np.abs(wrong.astype(int) - reference(net, image)).mean() > 10


def test_fp16_model_against_the_fp32_net(image, tmp_path):
    net = Net(4)
    path = export(Net(4), tmp_path / "fp16.onnx", dtype=torch.float16)
    predictor = sdk.Predictor(path, backend="ort-cpu", pipeline={"value_range": (0, 1)})
    assert predictor.pipeline.input_dtype == np.float16
    assert psnr(predictor(image), reference(net, image)) >= 40


def test_static_size_model(image, tmp_path):
    net = Net(2)
    path = export(Net(2), tmp_path / "static.onnx", static=(32, 32))
    predictor = sdk.Predictor(path, backend="ort-cpu", pipeline={"value_range": (0, 1)})
    assert predictor.pipeline.static_size == (32, 32) and predictor.scale == 2
    square = np.ascontiguousarray(np.resize(image, (32, 32, 3)))
    assert max_diff(predictor(square), reference(net, square)) <= 1
    # A smaller image is reflect-padded to the model's size and cropped back.
    assert max_diff(predictor(image), reference(net, image, pad_to=(32, 32))) <= 1
    # A larger one runs as tiles of exactly 32x32 (the tiling's job), stitched to the whole picture.
    big = np.ascontiguousarray(np.resize(image, (40, 48, 3)))
    assert max_diff(predictor(big), reference(net, big)) <= 1
    with pytest.raises(sdk.InputError, match=r"static 32x32 input.*tile="):
        predictor.pipeline.feeds(np.zeros((1, 3, 40, 48), np.float32), 2)


def test_multiple_of(image, tmp_path):
    net = NeedsMultipleOf8()
    path = export(NeedsMultipleOf8(), tmp_path / "unet.onnx")
    odd = image[:19, :23].copy()
    undeclared = sdk.Predictor(path, backend="ort-cpu", pipeline={"value_range": (0, 1), "scale": 2})
    with pytest.raises(sdk.SDKError, match="multiple_of"):
        undeclared(odd)
    predictor = sdk.Predictor(path, backend="ort-cpu", pipeline={"value_range": (0, 1), "multiple_of": 8})
    assert predictor.scale == 2
    assert max_diff(predictor(odd), reference(net, odd, pad_to=(24, 24))) <= 1
    assert max_diff(predictor(image[:16, :24].copy()), reference(net, image[:16, :24])) <= 1


def test_model_without_metadata_warns_once(exported, caplog):
    _, path = exported["rgb01-prelu-x2"]
    with caplog.at_level(logging.WARNING, logger="sdk"):
        sdk.Predictor(path, backend="ort-cpu")
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and warned[0].name == "sdk.spec"
    message = warned[0].getMessage()
    assert "values 0..255" in message and "colour rgb" in message
    assert "pipeline=" in message and "sdk annotate" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sdk"):
        sdk.Predictor(path, backend="ort-cpu", pipeline={"color": "rgb", "value_range": (0, 1)})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_carry_their_pipeline(name, caplog):
    with caplog.at_level(logging.WARNING, logger="sdk"):
        predictor = sdk.Predictor(name, backend="ort-cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert set(predictor.spec_sources.values()) <= {"metadata", "default"}


def test_annotated_fp16_and_multiple_of_need_no_hints(image, tmp_path, caplog):
    odd = image[:19, :23].copy()
    unet = NeedsMultipleOf8()
    annotate(
        export(NeedsMultipleOf8(), tmp_path / "unet.onnx"),
        tmp_path / "unet-a.onnx",
        {"value_range": (0, 1), "multiple_of": 8, "color": "rgb"},
    )
    half = Net(4)
    annotate(
        export(Net(4), tmp_path / "half.onnx", dtype=torch.float16),
        tmp_path / "half-a.onnx",
        {"value_range": (0, 1), "color": "rgb"},
    )
    with caplog.at_level(logging.WARNING, logger="sdk"):
        unet_p = sdk.Predictor(tmp_path / "unet-a.onnx", backend="ort-cpu")
        half_p = sdk.Predictor(tmp_path / "half-a.onnx", backend="ort-cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert max_diff(unet_p(odd), reference(unet, odd, pad_to=(24, 24))) <= 1
    assert psnr(half_p(image), reference(half, image)) >= 40
