"""A model compiled by OpenVINO for the CPU, run on numpy feeds.

The model is compiled once, with the dynamic axes it was exported with, so one compiled model serves
every image size and every runtime ``factor``. Infer requests are pooled: a request holds its own
buffers and must not run twice at once, but one per concurrent caller can be reused call after call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk import BackendUnavailableError, SDKError, Session, TensorInfo


def compile_model(core, model, config: Mapping[str, Any]):
    try:
        # From the path, not from bytes: OpenVINO then finds external weight files beside it.
        network = core.read_model(str(model.path))
        return core.compile_model(network, "CPU", dict(config))
    except Exception as exc:  # an operator or attribute OpenVINO lacks: another backend may run it
        raise BackendUnavailableError(
            f"openvino cannot compile {model.path}: {type(exc).__name__}: {str(exc).strip()}; "
            "run this model with backend='ort-cpu' (or 'auto')"
        ) from exc


class OpenVinoSession(Session):
    def __init__(self, core, model, config: Mapping[str, Any]):
        self.model_path = model.path
        self._compiled = compile_model(core, model, config)
        # The SDK feeds and reads tensors by the ONNX names; OpenVINO ports may carry several names.
        self.inputs = tuple(_info(self._compiled.inputs, info.name, model) for info in model.inputs)
        self.outputs = tuple(_info(self._compiled.outputs, info.name, model) for info in model.outputs)
        self._output_names = [info.name for info in self.outputs]
        self._idle: list = []
        self._lock = threading.Lock()

    def ov_property(self, name: str):
        """An OpenVINO property of the compiled model, e.g. "INFERENCE_NUM_THREADS"."""
        return self._compiled_model().get_property(name)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self._acquire()
        try:
            # share_inputs: OpenVINO reads the caller's arrays in place instead of copying them in.
            result = request.infer(
                {name: np.ascontiguousarray(array) for name, array in feeds.items()},
                share_inputs=True,
                share_outputs=False,
            )
            return {name: _owned(result[name]) for name in self._output_names}
        except RuntimeError as exc:
            shapes = {name: list(np.shape(array)) for name, array in feeds.items()}
            raise SDKError(
                f"openvino failed running {self.model_path.name} on inputs {shapes}: {str(exc).strip()}; "
                "check the same feeds with backend='ort-cpu' to tell a model problem from an engine one"
            ) from exc
        finally:
            self._release(request)

    def close(self) -> None:
        with self._lock:
            self._compiled = None
            self._idle.clear()

    def _compiled_model(self):
        compiled = self._compiled
        if compiled is None:
            raise SDKError("this openvino session is closed; create a new Predictor")
        return compiled

    def _acquire(self):
        with self._lock:
            return self._idle.pop() if self._idle else self._compiled_model().create_infer_request()

    def _release(self, request) -> None:
        with self._lock:
            if self._compiled is not None:
                self._idle.append(request)


def _owned(array: np.ndarray) -> np.ndarray:
    """The SDK post-processes outputs in place, so each must be a writeable array of its own."""
    if not isinstance(array, np.ndarray) or not array.flags.writeable or not array.flags.owndata:
        return np.array(array, copy=True)
    return array


def _info(ports, name: str, model) -> TensorInfo:
    for port in ports:
        if name in port.get_names():
            shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            return TensorInfo(name, shape, np.dtype(port.get_element_type().to_dtype()))
    raise BackendUnavailableError(
        f"openvino compiled {model.path} but lost its tensor {name!r} (it has "
        f"{sorted(n for p in ports for n in p.get_names())}); run this model with backend='ort-cpu'"
    )
