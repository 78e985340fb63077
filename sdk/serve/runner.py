"""The model's three steps as the server batches them: prepare (worker thread) -> engine (engine
thread, many requests' tiles at once) -> finish (worker thread)."""

from __future__ import annotations

import numpy as np


class TileRunner:
    """Pre/post through ``predictor.pipeline``; stateless, so any worker thread may call it."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.pipeline = predictor.pipeline
        # The pipeline contract (prepare -> run_tensor -> finish on model-space NCHW tensors).
        # TRANSITIONAL: until that contract is on main, fall back to the feeds-based pipeline.
        self._contract = hasattr(self.pipeline, "run_tensor")

    def prepare(self, batch: np.ndarray, scale: int):
        """N x h x w x 3 uint8 -> (model tensor, what finish needs)."""
        prepared = self.pipeline.prepare(batch, scale)
        if self._contract:
            return prepared.tensor, prepared
        return prepared.feeds[self.pipeline.spec.image_input], prepared

    def run(self, tensor: np.ndarray, scale: int) -> np.ndarray:
        session = self.predictor.session
        if self._contract:
            return self.pipeline.run_tensor(session, tensor, scale)
        spec = self.pipeline.spec
        feeds = {spec.image_input: tensor}
        if spec.scale_input is not None:
            feeds[spec.scale_input] = np.array([1.0, 1.0, scale, scale], dtype=np.float32)
        return session.run(feeds)[self.pipeline.output_name]

    def finish(self, out: np.ndarray, prepared) -> np.ndarray:
        if self._contract:
            return self.pipeline.finish(out, prepared)
        return self.pipeline.finish({self.pipeline.output_name: out}, prepared)
