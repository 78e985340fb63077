"""The model's three steps as the server batches them: prepare (worker thread) -> engine (engine
thread, many requests' tiles at once) -> finish (worker thread), through ``predictor.pipeline``."""

from __future__ import annotations

import numpy as np


class TileRunner:
    """Stateless, like the pipeline it calls, so any worker thread may use it."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.pipeline = predictor.pipeline

    def prepare(self, batch: np.ndarray, scale: int):
        """N x h x w x 3 uint8 -> (model-space tensor, what finish needs)."""
        prepared = self.pipeline.prepare(batch, scale)
        return prepared.tensor, prepared

    def run(self, tensor: np.ndarray, scale: int) -> np.ndarray:
        return self.pipeline.run_tensor(self.predictor.session, tensor, scale)

    def finish(self, out: np.ndarray, prepared) -> np.ndarray:
        return self.pipeline.finish(out, prepared)
