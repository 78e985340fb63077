"""Export a zoo network to ONNX and prove the file computes what PyTorch computes.

Exporter choice: ``torch.onnx.export(..., dynamo=False, opset_version=11)``, the TorchScript-based
exporter. The newer default (``dynamo=True``) refuses the custom ``symbolic`` that wires the
runtime ``factor`` into Resize, cannot go down to opset 11 (it stays at 18) and writes the weights
to a separate ``.data`` file. Opset 11 is what the tutorials ship and what every backend we target
reads.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import ExportError
from ..files import atomic_write
from ..spec import PIPELINE_KEY, PipelineSpec
from .catalog import ModelCard

OPSET = 11
OUTPUT_NAME = "output"
RTOL, ATOL = 1e-3, 1e-5  # the tutorial's tolerances, on values scaled to 0..1


@dataclass(frozen=True)
class Comparison:
    """One ONNX Runtime vs PyTorch comparison of an exported model."""

    case: str
    output_shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    tolerance_used: float  # max of |a - b| / (atol + rtol |b|): assert_allclose passes below 1

    def __str__(self) -> str:
        return (
            f"{self.case:<22} output {'x'.join(map(str, self.output_shape)):<14} "
            f"max abs diff {self.max_abs:.2e}  max rel diff {self.max_rel:.2e}  "
            f"({100 * self.tolerance_used:.1f}% of the tolerance)"
        )


def _dynamic_axes(spec: PipelineSpec) -> dict[str, dict[int, str]]:
    # `factor` keeps its static shape [4]: Resize needs exactly one scale per axis.
    return {
        spec.image_input: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
    }


def _sdk_version() -> str:
    return str(getattr(sys.modules.get("sdk"), "__version__", "dev"))


def _check_inputs(model: onnx.ModelProto, spec: PipelineSpec) -> None:
    """Refuse a graph whose inputs are not the spec's: the tutorial's trap ends up here.

    Passing the factor as a Python int, or reading it with ``.item()``, makes the tracer record it
    as a constant; the exporter then writes a model with one input (or an input nothing reads) that
    upsamples by the export-time factor whatever it is given.
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    names = [i.name for i in graph.input if i.name not in initializers]
    expected = [spec.image_input] + ([spec.scale_input] if spec.scale_input else [])
    if names != expected:
        raise ExportError(
            f"the exported graph has inputs {names}, expected {expected}. "
            + (
                "The scale factor was baked in as a constant: pass it as a tensor [1, 1, s, s] "
                "and route it through sdk.zoo.resize.runtime_bicubic (not an int, not .item())."
                if spec.scale_input
                else "Export the network with a single image tensor argument."
            )
        )
    consumed = {name for node in graph.node for name in node.input}
    unused = [n for n in names if n not in consumed]
    if unused:
        raise ExportError(
            f"the exported graph never reads its input(s) {unused}: the value was traced as a "
            "constant. Pass it through sdk.zoo.resize.runtime_bicubic instead of reading it with "
            ".item() or int()."
        )


def to_onnx(network: nn.Module, example_args: Sequence, spec: PipelineSpec, *, doc: str = "") -> onnx.ModelProto:
    """Trace ``network`` on ``example_args`` into a checked opset-11 model carrying ``spec``."""
    input_names = [spec.image_input] + ([spec.scale_input] if spec.scale_input else [])
    for position, arg in enumerate(example_args):
        if not isinstance(arg, torch.Tensor):
            # The tracer records a Python number as a constant: a factor passed this way could
            # never change at run time, which is the tutorial's first trap.
            raise ExportError(
                f"export argument {position} is a Python {type(arg).__name__}, not a tensor: it would be "
                "baked into the graph as a constant. Pass the scale factor as a float32 tensor "
                "[1, 1, s, s] (sdk.zoo.resize.scale_factor_tensor)."
            )
    buffer = io.BytesIO()
    network.eval()
    try:
        with warnings.catch_warnings():
            # The tracer warns about the very traps _check_inputs refuses; the refusal is clearer.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The legacy exporter is a deliberate choice (see the module docstring), not news.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                network,
                tuple(example_args),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=input_names[: len(example_args)],
                output_names=[OUTPUT_NAME],
                dynamic_axes=_dynamic_axes(spec),
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc
    model = onnx.load_from_string(buffer.getvalue())
    _check_inputs(model, spec)
    entry = model.metadata_props.add()
    entry.key, entry.value = PIPELINE_KEY, spec.to_json()
    model.producer_name = "deploy-sdk"
    model.producer_version = _sdk_version()
    model.doc_string = doc
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported model fails onnx.checker: {exc}") from exc
    return model


def _sample_image(channels: int, height: int, width: int, batch: int, value_scale: float, seed: int) -> torch.Tensor:
    # Smooth random content: an upsampled noise field, so the values look like an image's (pure
    # noise would put most outputs near zero, where a relative difference means nothing).
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((batch, channels, height // 4 + 2, width // 4 + 2), dtype=np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (fine * value_scale).clamp(0, value_scale)


def verify(model: onnx.ModelProto, network: nn.Module, card: ModelCard) -> list[Comparison]:
    """Run the ONNX model on ONNX Runtime (CPU) and PyTorch on the same inputs; compare.

    Covers every scale the card serves and a batch of 2 at another size, so the dynamic batch and
    spatial axes are exercised too. Raises ExportError if outputs differ beyond the tolerances or
    an output does not have the size the scale implies.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    cases = [(scale, 1, 40, 52) for scale in card.train_scales] + [(card.train_scales[-1], 2, 33, 27)]
    results = []
    for i, (scale, batch, height, width) in enumerate(cases):
        image = _sample_image(card.channels, height, width, batch, card.value_scale, seed=i)
        args = card.example_inputs(image, scale)
        with torch.no_grad():
            expected = network(*args).numpy()
        feeds = {name: arg.numpy() for name, arg in zip(card.input_names(), args)}
        (got,) = session.run([OUTPUT_NAME], feeds)
        case = f"x{scale} batch {batch} {height}x{width}"
        want_shape = (batch, card.channels, height * scale, width * scale)
        if got.shape != want_shape:
            raise ExportError(
                f"{case}: ONNX Runtime returned {got.shape}, expected {want_shape}; "
                "the exported model does not honour its scale"
            )
        a, b = got / card.value_scale, expected / card.value_scale
        diff = np.abs(a - b)
        rel = diff / np.maximum(np.abs(b), np.finfo(np.float32).tiny)
        used = float((diff / (ATOL + RTOL * np.abs(b))).max())
        results.append(Comparison(case, got.shape, float(diff.max()), float(rel[b != 0].max()), used))
        try:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
        except AssertionError as exc:
            raise ExportError(
                f"{case}: ONNX Runtime and PyTorch disagree beyond rtol={RTOL}, atol={ATOL}:{exc}"
            ) from None
    return results


def export_card(
    card: ModelCard, network: nn.Module, path: Path, *, doc: str, log: Callable[[str], None] = print
) -> list[Comparison]:
    """Export one zoo network to ``path``, verify it, print the figures; return the comparisons."""
    network.eval()
    example = _sample_image(card.channels, 24, 24, 1, card.value_scale, seed=100)
    model = to_onnx(network, card.example_inputs(example, card.train_scales[0]), card.spec, doc=doc)
    comparisons = verify(model, network, card)
    atomic_write(path, model.SerializeToString())
    log(f"{path}  ({path.stat().st_size / 1024:.0f} KiB, inputs {', '.join(card.input_names())}, opset {OPSET})")
    for comparison in comparisons:
        log(f"  ok  {comparison}")
    return comparisons
