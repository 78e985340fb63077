"""``precision="int8"`` for ``ort-cpu``: the model statically quantised by onnxruntime.quantization.

Opt-in, never the default: int8 changes the picture (its Y-PSNR cost on Set5 is in
docs/benchmarks.md). Activations are calibrated on the photographs the package already trains on
(:mod:`sdk.photos`: scikit-image and scikit-learn samples, no download) - never on an
evaluation set. Weights are int8 per channel, activations uint8, as QLinearConv operators (measured
slightly faster than the QDQ form here), ONNX Runtime's integer kernels (AVX-512 VNNI where the CPU
has it).

Where those kernels add uint8 x int8 products in pairs into 16 bits (x86 without VNNI: AVX2, and
AVX-512 without VNNI), a pair of full-range products (2 x 255 x 127 > 32767) saturates, and srcnn3
loses tens of grey levels (28.9 dB against fp32 on an AVX2 EPYC, where exact integer arithmetic on
the same model gives 48.0 dB). There the weights get 7 bits (2 x 255 x 64 < 32767), which keeps every
sum exact (41.5 dB). Which case applies is asked of the kernels themselves (:func:`pairs_saturate`),
not guessed from the CPU's name.

The calibration photos go through the pipeline the model runs with, the caller's ``pipeline=``
declaration included (``Model.declared``): calibrated on 0..255 what runs on 0..1, every range is 255
times too wide and the community's nets came out at 3-22 dB against fp32.

The quantised model is cached beside the optimised ones, keyed on the content of the model it was
made from (already rewritten for its factor), the pipeline it was calibrated through, the calibration
recipe, the weights' bits and the onnxruntime version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from sdk.errors import BackendUnavailableError, SDKError

CALIBRATION_VERSION = 4
CALIBRATION_SIZE = 96  # pixels per side of each calibration crop: the statistics need content, not size
CALIBRATION_SCALE = 3  # for a model that takes its factor at run time (optimize=False)


def calibration_spec(model):
    """The pipeline the model runs with: its declaration over its metadata over what its graph says.

    A declared runtime scale input that the rewrite baked in is not an input any more: the rewritten
    model's own metadata (sdk.optimize fixes it) or graph then says the scale."""
    from sdk.resolution import resolve

    declared = dict(model.declared)
    names = {i.name for i in model.inputs}
    if declared.get("scale_input") and declared["scale_input"] not in names:
        declared.pop("scale_input")
        declared.pop("scale", None)
    return resolve(model, declared).spec


def calibration_feeds(model, spec) -> list[dict[str, np.ndarray]]:
    """One feed dict per training photo, prepared by the model's own pipeline."""
    from sdk.photos import load_training_photos
    from sdk.pipeline import Pipeline

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


# The probe: one QLinearConv of PROBE_TAPS products 255 x 127, answered exactly as PROBE_EXACT when the
# kernels keep every sum; pairs saturated at 32767 give about half of it.
PROBE_TAPS = 72  # 8 channels x 3 x 3, a real convolution's shape rather than a dot product's
PROBE_EXACT = 200


@functools.cache
def pairs_saturate(ort) -> bool:
    """Whether ``ort``'s uint8 x int8 QLinearConv saturates its sums on this CPU (then weights get 7 bits)."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 8, 3, 3]
    constants = {
        "x_scale": np.float32(1),
        "x_zero": np.uint8(0),
        "w": np.full(shape, 127, np.int8),
        "w_scale": np.ones(1, np.float32),
        "w_zero": np.zeros(1, np.int8),
        "y_scale": np.float32(PROBE_TAPS * 255 * 127 / PROBE_EXACT),
        "y_zero": np.uint8(0),
    }
    node = helper.make_node(
        "QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"], ["y"]
    )
    graph = helper.make_graph(
        [node],
        "saturation_probe",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"x": np.full(shape, 255, np.uint8)})
    return abs(int(result.ravel()[0]) - PROBE_EXACT) > 1


def _key(model, spec, ort_version: str, weight_bits: int) -> str:
    text = json.dumps(
        {
            "model_sha256": model.sha256,
            "pipeline": spec.to_json(),
            "precision": "int8",
            "calibration": CALIBRATION_VERSION,
            "weight_bits": weight_bits,
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
    reduce_range = pairs_saturate(ort)
    spec = calibration_spec(model)
    folder = (Path(cache_dir) if cache_dir else cache_root()) / "int8"
    path = folder / f"{_key(model, spec, ort.__version__, 7 if reduce_range else 8)}.onnx"
    if not path.is_file():
        try:
            feeds = calibration_feeds(model, spec)
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
                reduce_range=reduce_range,
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
    quantised.declared = model.declared
    return quantised
