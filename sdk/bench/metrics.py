"""Numbers from measurements: latency statistics and output accuracy against the reference."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """When an output counts as the reference's picture (Polygraphy-style PASS/FAIL)."""

    max_abs_diff: float = 2.0
    min_psnr_db: float = 45.0

    def passes(self, max_abs_diff: int, psnr_db: float | None) -> bool:
        # psnr None means identical pictures (infinite PSNR).
        return max_abs_diff <= self.max_abs_diff and (psnr_db is None or psnr_db >= self.min_psnr_db)

    def __str__(self) -> str:
        return f"max abs diff <= {self.max_abs_diff:g} and PSNR >= {self.min_psnr_db:g} dB (uint8 outputs vs torch)"


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """mean, p50, p90, p99 and min of call times, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"mean": float(ms.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99), "min": float(ms.min())}


def stage_means(stages: list[tuple[float | None, float, float | None]]) -> dict[str, float | None]:
    """Mean pre / infer / post time in ms; None for a stage the row does not have (raw engines)."""
    means = {}
    for index, name in enumerate(("pre", "infer", "post")):
        values = [s[index] for s in stages]
        means[name] = None if not values or values[0] is None else float(np.mean(values) * 1e3)
    return means


def compare_images(reference: np.ndarray, candidate: np.ndarray) -> tuple[int, float | None]:
    """(max abs diff, PSNR in dB) of two uint8 image stacks; PSNR None when they are identical."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {candidate.shape} vs the reference's {reference.shape}")
    diff = reference.astype(np.int16) - candidate.astype(np.int16)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    psnr = None if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    return int(np.abs(diff).max()), psnr
