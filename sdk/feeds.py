"""Raw tensors for a model (``Predictor.run``, the server's /v2 requests): checked against its inputs
before any engine sees them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .errors import InputError
from .graph.tensors import TensorInfo


def check_feeds(feeds: Mapping[str, np.ndarray], inputs: Iterable[TensorInfo]) -> None:
    """InputError unless ``feeds`` has exactly the model's inputs with fitting dtypes and shapes."""
    inputs = list(inputs)
    if not isinstance(feeds, Mapping):
        raise InputError(f"feeds must be a dict of input name -> numpy array, not {type(feeds).__name__}")
    expected = {i.name for i in inputs}
    if set(feeds) != expected:
        missing, unknown = sorted(expected - set(feeds)), sorted(set(feeds) - expected)
        raise InputError(
            f"feeds must name exactly the model's inputs {sorted(expected)}; missing {missing}, unknown {unknown}"
        )
    for info in inputs:
        value = feeds[info.name]
        if not isinstance(value, np.ndarray):
            raise InputError(f"feed {info.name!r} is a {type(value).__name__}; pass a numpy array")
        if value.dtype != info.dtype:
            raise InputError(
                f"feed {info.name!r} is {value.dtype}; the model wants {info.dtype} (use .astype(np.{info.dtype}))"
            )
        fits = len(value.shape) == len(info.shape) and all(
            not isinstance(want, int) or want == got for want, got in zip(info.shape, value.shape)
        )
        if not fits:
            shown = ["?" if not isinstance(d, int) else d for d in info.shape]
            raise InputError(f"feed {info.name!r} has shape {list(value.shape)}; the model wants {shown} (? = any)")
