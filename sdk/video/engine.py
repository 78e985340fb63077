"""The Predictor a video job opens: with the options its backend asks for when the engine shares the
CPU with other work, and, where the backend can, for one engine call per core at once
(:mod:`sdk.sharing`: ``Backend.server_options`` and ``Backend.concurrent_options``).

In a video job the engine's runs alternate with decoding, colour conversion and x264 on the same
cores. ONNX Runtime's intra-op threads spin-wait after each run to answer the next one sooner, and
that spinning takes the core x264 needs: measured side by side on the 2-core machine (espcn x3 and
srcnn3 x2 from 640x360, 24 frames, 3 interleaved rounds, load 10-13), one frame per run cost 15-18%
more CPU per frame than four with spinning on, and the same as four with it off. So the CPU path
runs one frame at a time (see :data:`sdk.video.job.CPU_BATCH`), which halves the peak memory, with
spinning off.

And one frame per call, each call on one thread, with as many calls at once as there are cores
(the engine stage's workers, :class:`sdk.video.stages.Stage`), rather than one call split over all
cores: ONNX Runtime splits each convolution statically between its threads, so when x264 takes one
core for a moment the other thread finishes its half and waits, and in the pipeline the cores sat
idle 10% of the time (idle machine, 48 frames: 1.79 of 2 cores busy). Measured side by side on the
idle 2-core machine (48 frames from 640x360, medians of 3 interleaved rounds): the pipeline went from
3.41 to 3.76 fps for espcn x3 and from 3.44 to 4.19 fps for srcnn3 x2; the engine alone from 4.84 to
6.13 and from 4.49 to 5.19 fps (benchmarks/video.py prints both settings).
"""

from __future__ import annotations


def engine_calls() -> int:
    """Engine calls a video job asks to run at once: one per core (the backend may run fewer)."""
    from ..devices import cpu_cores

    return cpu_cores()


def open_predictor(model, backend: str = "auto", device: str = "auto", **kwargs):
    """``Predictor(model, backend, device, **kwargs)`` opened to share the CPU with the codecs, for
    :func:`engine_calls` engine calls at once where its backend can run them
    (:func:`sdk.sharing.open_predictor`)."""
    from ..sharing import open_predictor as open_shared

    return open_shared(model, backend, device, calls=engine_calls(), **kwargs)
