"""Telling a model's value range by running it: a super-resolved picture, scaled back down, should
look like its input. Run under each candidate range; keep the winner only when it wins clearly.
(Not :meth:`sdk.Backend.probe`, which tells whether a backend can run on a device.)

It cannot tell on nets whose activations are positively homogeneous (ReLU, PReLU) and whose
biases are small: scaling their input scales their output, so every range reproduces the input
about equally well - and there the wrong range costs only a few grey levels anyway. It is offered
as a tool (``sdk info --probe``, ``sdk annotate --probe``), never run behind the user's back: on
some engines a run at a new size or factor builds an engine, which can take minutes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

CANDIDATES = ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0))
MIN_PSNR_DB = 25.0  # the winner must reproduce its input at least this well
MIN_MARGIN_DB = 3.0  # ... and beat the runner-up by this much
_SIDE = 48


@dataclass(frozen=True)
class Detection:
    value_range: tuple[float, float] | None  # None: ambiguous
    scores: dict  # candidate range -> PSNR (dB) of the round trip
    reason: str


def sample_picture(side: int = _SIDE) -> np.ndarray:
    """A deterministic picture with smooth shading, edges and texture (no file, no download)."""
    from PIL import Image, ImageFilter

    y, x = np.mgrid[0:side, 0:side] / side
    rng = np.random.default_rng(0)
    channels = []
    for c in range(3):
        base = 120 + 80 * np.sin(2.5 * x + c) * np.cos(3.0 * y - c)
        disc = ((x - 0.3 - 0.2 * c) ** 2 + (y - 0.6) ** 2) < 0.04
        channels.append(base + 60 * disc + rng.normal(0, 6, (side, side)))
    image = np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(0.7)))


def detect_value_range(predictor, scale: int | None = None) -> Detection:
    """Run ``predictor``'s model under each candidate range (one session, several pipelines)."""
    from PIL import Image

    from .pipeline import Pipeline

    scale = predictor.check_scale(scale if scale is not None or predictor.scale else 2)
    image = sample_picture()
    scores: dict[tuple[float, float], float] = {}
    for candidate in CANDIDATES:
        spec = dataclasses.replace(predictor.spec, value_range=candidate, output_range=None)
        pipeline = Pipeline(spec, predictor.model)
        prepared = pipeline.prepare(image[None], scale)
        out = pipeline.finish(pipeline.run_tensor(predictor.session, prepared.tensor, scale), prepared)[0]
        back = (
            np.asarray(Image.fromarray(out).resize(image.shape[1::-1], Image.Resampling.BICUBIC)) if scale > 1 else out
        )
        mse = np.mean((back.astype(np.float64) - image) ** 2)
        scores[candidate] = float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    best, second = ranked[0], ranked[1]
    shown = ", ".join(f"{lo:g}..{hi:g}: {scores[(lo, hi)]:.1f} dB" for lo, hi in CANDIDATES)
    if scores[best] < MIN_PSNR_DB:
        return Detection(None, scores, f"no range reproduces the input ({shown})")
    if scores[best] - scores[second] < MIN_MARGIN_DB:
        return Detection(
            None,
            scores,
            f"ambiguous: {best[0]:g}..{best[1]:g} and {second[0]:g}..{second[1]:g} do about equally well ({shown})",
        )
    return Detection(best, scores, f"{best[0]:g}..{best[1]:g} wins clearly ({shown})")
