"""The Predictor a video job opens: with the options its backend asks for when the engine shares the
CPU with other work (``Backend.server_options``, as a server opens it).

In a video job the engine's runs alternate with decoding, colour conversion and x264 on the same
cores. ONNX Runtime's intra-op threads spin-wait after each run to answer the next one sooner, and
that spinning takes the core x264 needs: measured side by side on the 2-core machine (espcn x3 and
srcnn3 x2 from 640x360, 24 frames, 3 interleaved rounds, load 10-13), one frame per run cost 15-18%
more CPU per frame than four with spinning on, and the same as four with it off. So the CPU path
runs one frame at a time (see :data:`sdk.video.job.CPU_BATCH`), which halves the peak memory, with
spinning off.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def shared_cpu_options(backend: str, device: str) -> dict[str, Any]:
    """The options the first backend to try asks for when its engine shares the CPU (none when it asks
    for none, or when the choice fails: the Predictor then says what is wrong)."""
    from ..devices import parse_device
    from ..errors import SDKError
    from ..selection import candidates

    try:
        first, chosen = candidates(backend, parse_device(device))[0]
    except SDKError:
        return {}
    try:
        return {k: v for k, v in dict(first.server_options(chosen)).items() if first.accepts(k)}
    except Exception as exc:  # a plugin's bug costs it these settings, not the job
        log.warning(
            "backend %s: server_options failed (%s: %s); opened without them", first.name, type(exc).__name__, exc
        )
        return {}


def open_predictor(model, backend: str = "auto", device: str = "auto", **kwargs):
    """``Predictor(model, backend, device, **kwargs)`` with :func:`shared_cpu_options`; when those
    narrow "auto" to backends of which none starts, opened again without them."""
    from ..errors import BackendUnavailableError
    from ..predictor import Predictor

    options = shared_cpu_options(backend, device)
    if options:
        try:
            return Predictor(model, backend=backend, device=device, **kwargs, **options)
        except BackendUnavailableError:
            if backend != "auto":
                raise
    return Predictor(model, backend=backend, device=device, **kwargs)
