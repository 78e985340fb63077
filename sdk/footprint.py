"""How much memory one run of a model takes at a given input size, derived from its graph.

Activations, not weights, decide what fits: SRCNN's first convolution at x3 on a 12-megapixel photo
is a 27.6 GB tensor. We derive the peak from the graph itself, the same way for every model
(:mod:`sdk.graph.activations`: shape inference on a copy with concrete sizes, then the bytes alive at
each node). Activations grow with the number of pixels, so one inference at a small probe size gives
bytes per pixel, cached per model and scale.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

PROBE = 64  # probe side in input pixels: small enough to infer in milliseconds
# Post-processing's own float temporaries per output pixel, by the pipeline's colour mode (measured
# against peak RSS on ort-cpu): RGB rounds in place and transposes once; luma models rebuild the
# colour from upscaled chroma planes and a YCbCr -> RGB product.
_POST_BYTES = {
    "y": 56,
    "rgb": 24,
    "bgr": 24,
    "gray": 24,
}


@dataclass(frozen=True)
class Footprint:
    """Peak bytes of one run = ``fixed`` (weights) + ``per_pixel`` x N x H x W (input pixels)."""

    fixed: int
    per_pixel: float
    derived: bool  # False: the fallback guess, not shape inference

    def peak(self, n: int, height: int, width: int) -> int:
        return int(self.fixed + self.per_pixel * n * height * width)

    def pixels_within(self, budget: int) -> int:
        """Input pixels (N x H x W) one run may have to stay within ``budget`` bytes."""
        return max(0, int((budget - self.fixed) / self.per_pixel)) if self.per_pixel > 0 else 2**62


_lock = threading.Lock()
_cache: dict[tuple, Footprint] = {}
_KEPT = 256  # footprints kept (model files x scales x probes); more evicts the oldest


def footprint(model, spec, scale: int, probe: tuple[int, int] | None = None) -> Footprint:
    """The model's footprint at ``scale``, cached per model file and scale (and probe size)."""
    stat = model.path.stat()
    key = (str(model.path), stat.st_mtime_ns, stat.st_size, scale, probe)
    with _lock:
        found = _cache.get(key)
    if found is None:
        found = _derive(model, spec, scale, probe or (PROBE, PROBE))
        with _lock:
            _cache[key] = found
            while len(_cache) > _KEPT:
                del _cache[next(iter(_cache))]
    return found


def _derive(model, spec, scale: int, probe: tuple[int, int]) -> Footprint:
    from .graph import activations

    weights = activations.weight_bytes(model.proto)
    pixels = probe[0] * probe[1]
    try:
        live = activations.peak_live_bytes(activations.concrete_copy(model, spec, scale, probe), spec.image_input)
        post = _POST_BYTES.get(getattr(spec, "color", "rgb"), 56) * scale * scale
        return Footprint(weights, live / pixels + post, True)
    except Exception as exc:  # shape inference gives up on custom ops and data-dependent shapes
        log.info("cannot infer the activation sizes of %s (%s); using a conservative estimate", model.name, exc)
        return Footprint(weights, activations.fallback_per_pixel(model.proto, scale), False)
