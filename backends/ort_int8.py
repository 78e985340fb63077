"""``precision="int8"`` for ``ort-cpu``: the model statically quantised by onnxruntime.quantization.

Opt-in, never the default: int8 changes the picture (its Y-PSNR cost on Set5 is in
docs/benchmarks.md). Activations are calibrated on the photographs the package already trains on
(:mod:`sdk.zoo.photos`: scikit-image and scikit-learn samples, no download) - never on an
evaluation set. Weights are int8 per channel, activations uint8, as QLinearConv operators (measured
slightly faster than the QDQ form here), ONNX Runtime's integer kernels (AVX-512 VNNI where the CPU
has it).

The quantised model is cached beside the optimised ones, keyed on the content of the model it was
made from (already rewritten for its factor), the calibration recipe and the onnxruntime version.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from sdk.errors import BackendUnavailableError, SDKError

CALIBRATION_VERSION = 3
CALIBRATION_SIZE = 96  # pixels per side of each calibration crop: the statistics need content, not size
CALIBRATION_SCALE = 3  # for a model that takes its factor at run time (optimize=False)


def calibration_feeds(model) -> list[dict[str, np.ndarray]]:
    """One feed dict per training photo, prepared by the model's own pipeline."""
    from sdk.pipeline import Pipeline
    from sdk.spec import resolve
    from sdk.zoo.photos import load_training_photos

    spec = resolve(model).spec
    pipeline = Pipeline(spec, model)
    scale = spec.scale or CALIBRATION_SCALE
    names = {i.name for i in model.inputs}
    feeds = []
    for photo in load_training_photos().values():
        h, w = photo.shape[:2]
        side = min(CALIBRATION_SIZE, h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = np.ascontiguousarray(photo[top : top + side, left : left + side])
        prepared = pipeline.prepare(crop[None], scale)
        feeds.append({k: v for k, v in pipeline.feeds(prepared.tensor, scale).items() if k in names})
    return feeds


def _at_opset_13(model):
    """Per-channel quantisation needs DequantizeLinear's ``axis`` (opset 13): convert older models."""
    import onnx
    from onnx import version_converter

    from sdk.optimize.graph import load_with_weights

    proto = load_with_weights(model.path)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset < 13:
        proto = version_converter.convert_version(proto, 13)
        onnx.checker.check_model(proto)
    return proto


def _key(model, ort_version: str) -> str:
    text = json.dumps(
        {
            "model_sha256": model.sha256,
            "precision": "int8",
            "calibration": CALIBRATION_VERSION,
            "onnxruntime": ort_version,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def int8_model(model, ort, cache_dir: Path | None = None):
    """The :class:`sdk.model.Model` of ``model`` quantised to int8, from the cache or made now."""
    from sdk.model import Model
    from sdk.optimize.cache import cache_root

    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise BackendUnavailableError(
            f"precision='int8' needs onnxruntime.quantization ({exc}); pip install -U 'deploy-sdk[cpu]'"
        ) from exc
    folder = (Path(cache_dir) if cache_dir else cache_root()) / "int8"
    path = folder / f"{_key(model, ort.__version__)}.onnx"
    if not path.is_file():
        try:
            feeds = calibration_feeds(model)
        except SDKError as exc:
            raise BackendUnavailableError(
                f"precision='int8' calibrates on the package's training photos: {exc}"
            ) from exc

        class Photos(CalibrationDataReader):
            def __init__(self):
                self._items = iter(feeds)

            def get_next(self):
                return next(self._items, None)

        folder.mkdir(parents=True, exist_ok=True)
        # quantize_static writes to a path: a temporary name in the same folder, renamed when whole.
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
        os.close(fd)
        try:
            quantize_static(
                _at_opset_13(model),
                temp,
                Photos(),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
            for leftover in folder.glob(f".{path.name}.*"):  # the calibrator's augmented model
                leftover.unlink(missing_ok=True)
    quantised = Model(path)
    quantised.name = model.name
    return quantised
