"""The model's three steps as the server batches them: prepare (worker thread) -> run (the batcher's
thread, many requests' windows at once) -> finish (worker thread), through the Predictor's public steps."""

from __future__ import annotations

import numpy as np


class TileRunner:
    """Stateless, like the Predictor's steps it calls, so any worker thread may use it."""

    def __init__(self, predictor):
        self.predictor = predictor

    def prepare(self, batch: np.ndarray, scale: int):
        """N x h x w x 3 uint8 -> (model-space tensor, what finish needs)."""
        prepared = self.predictor.prepare(batch, scale)
        return prepared.tensor, prepared

    def run(self, tensor: np.ndarray, scale: int, cancel=None) -> np.ndarray:
        return self.predictor.run_tensor(tensor, scale, cancel)

    def finish(self, out: np.ndarray, prepared) -> np.ndarray:
        return self.predictor.finish(out, prepared)
