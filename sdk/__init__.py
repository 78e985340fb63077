"""deploy-sdk: one ONNX model, every inference engine this machine offers, one API.

    from sdk import Predictor
    hi = Predictor("srcnn3", backend="auto")(lo, scale=3)

Importing ``sdk`` loads no engine: backends import their libraries when first probed or used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from .backend import Availability, Backend, RawRunner, Session
from .cancel import CancelToken
from .devices import Device
from .errors import (
    BackendUnavailableError,
    Cancelled,
    ExportError,
    InputError,
    ModelError,
    PluginError,
    SDKError,
    TooLargeError,
)
from .graph.tensors import TensorInfo
from .hookspecs import hookimpl
from .predictor import Predictor
from .selection import BackendInfo
from .spec import PipelineSpec
from .tiling import Plan

try:
    __version__ = _version("deploy-sdk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def list_backends(device: str | Device | None = None) -> list[BackendInfo]:
    """One record per discovered backend (and per plugin that failed to load).

    Each record has ``name, distribution, version, devices, priority, available, reason`` (and
    ``plugin``, ``load_error``, ``details``); ``available`` is judged for ``device`` when given, else
    for the backend's own default device.
    """
    from .devices import parse_device
    from .selection import list_backends as _list

    return _list(parse_device(device) if device is not None else None)


__all__ = [
    "Availability",
    "Backend",
    "BackendInfo",
    "BackendUnavailableError",
    "CancelToken",
    "Cancelled",
    "Device",
    "ExportError",
    "InputError",
    "ModelError",
    "PipelineSpec",
    "Plan",
    "PluginError",
    "Predictor",
    "RawRunner",
    "SDKError",
    "Session",
    "TensorInfo",
    "TooLargeError",
    "__version__",
    "hookimpl",
    "list_backends",
]
