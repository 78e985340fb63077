"""The SDK's exceptions.

Every error a user can cause is one of these, and its message says what to do about it.
"""


class SDKError(Exception):
    """Base of every error the SDK raises on purpose."""


class ModelError(SDKError):
    """The model file is missing, unreadable, or not a model the SDK can drive."""


class BackendUnavailableError(SDKError):
    """The backend asked for cannot run here; the message says why and what to install."""


class InputError(SDKError):
    """An image, a scale or a raw feed does not fit the model."""


class TooLargeError(InputError):
    """An image's result, or its run in one piece, does not fit in this machine's memory (the server
    answers 413 for it)."""


class Cancelled(SDKError):
    """A call was called off through its :class:`sdk.CancelToken` (cancelled, or its deadline passed)
    before it finished; no result was produced."""


class PluginError(SDKError):
    """A backend plugin failed to load or broke the plugin contract."""


class ExportError(SDKError):
    """A PyTorch model could not be exported to a correct ONNX file."""
