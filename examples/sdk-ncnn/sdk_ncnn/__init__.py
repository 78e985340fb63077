"""sdk-ncnn: Tencent's ncnn as a deploy-sdk backend (``pip install ./examples/sdk-ncnn``).

Importing this module stays cheap (every ``sdk`` command loads all plugins): ncnn itself is imported
only when the backend is probed or a session is created.
"""

from __future__ import annotations

from sdk import hookimpl

from .backend import NcnnBackend


@hookimpl
def sdk_backends():
    return [NcnnBackend()]


__all__ = ["NcnnBackend", "sdk_backends"]
