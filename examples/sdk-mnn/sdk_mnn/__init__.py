"""sdk-mnn: Alibaba's MNN as a deploy-sdk backend (``pip install ./examples/sdk-mnn``).

Importing this module stays cheap (every ``sdk`` command loads all plugins): MNN itself is imported
only when the backend is probed or a session is created.
"""

from __future__ import annotations

from sdk import hookimpl

from .backend import MnnBackend


@hookimpl
def sdk_backends():
    return [MnnBackend()]


__all__ = ["MnnBackend", "sdk_backends"]
