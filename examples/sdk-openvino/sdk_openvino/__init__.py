"""sdk-openvino: OpenVINO as a deploy-sdk backend, installed with ``pip install sdk-openvino``.

deploy-sdk finds this module through the entry point ``openvino = "sdk_openvino"`` in the group
``sdk.backends`` and calls the hook below. Importing it must stay cheap - ``sdk backends`` and every
``backend="auto"`` import all plugins - so openvino itself is imported only when the backend is
probed or a session is created.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from sdk import hookimpl

from .backend import OpenVinoBackend

try:
    __version__ = _version("sdk-openvino")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


@hookimpl
def sdk_backends():
    return [OpenVinoBackend()]


__all__ = ["OpenVinoBackend", "__version__", "sdk_backends"]
