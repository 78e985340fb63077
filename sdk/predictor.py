"""The Predictor: one model on one backend, images in, images out."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Iterable, Mapping

import numpy as np

from .backend import Session, TensorInfo
from .devices import parse_device
from .errors import BackendUnavailableError, InputError, SDKError
from .images import check_color, to_rgb
from .model import Model
from .pipeline import Pipeline
from .selection import candidates
from .spec import resolve, warn_about_guesses
from .tiling import run_tiled

log = logging.getLogger(__name__)


class Predictor:
    """Run an upscaling model on the best (or the named) backend.

    >>> p = Predictor("srcnn3", backend="ort-cpu")
    >>> hi = p(lo, scale=3)           # HxWx3 uint8 -> 3Hx3Wx3 uint8
    """

    def __init__(self, model, backend: str = "auto", device: str = "auto", pipeline: Mapping[str, Any] | None = None,
                 **options: Any):
        if not isinstance(backend, str) or not backend:
            raise InputError(f"backend must be a name such as 'auto', 'ort-cpu' or 'trt', not {backend!r}")
        self.model = Model(model)
        resolution = resolve(self.model, pipeline)
        self.spec = resolution.spec
        self.spec_sources = dict(resolution.sources)  # field -> declared / metadata / inferred / default
        warn_about_guesses(resolution, self.model.name)
        self._session: Session | None = None
        skipped = []
        for engine, chosen in candidates(backend.lower(), parse_device(device)):
            foreign = [key for key in options if not engine.accepts(key)]
            if backend == "auto" and foreign:
                # An engine-specific option (precision="fp16" for trt) narrows the choice.
                log.info("backend %s does not take option(s) %s; trying the next one", engine.name, foreign)
                skipped.append(f"{engine.name} on {chosen}: does not take option(s) {foreign}")
                continue
            try:
                self._session = engine.create_session(self.model, chosen, options)
            except BackendUnavailableError as exc:
                if backend != "auto":
                    raise
                # auto goes on to the next backend, but says so: a quiet fallback is what users hate.
                log.warning("backend %s on %s could not start (%s); trying the next one", engine.name, chosen, exc)
                skipped.append(f"{engine.name} on {chosen}: {exc}")
                continue
            self.backend, self.device = engine.name, str(chosen)
            break
        if self._session is None:
            raise BackendUnavailableError("no backend could start:\n  " + "\n  ".join(skipped))
        self.pipeline = Pipeline(self.spec, self.model)
        image = self._input(self.spec.image_input)
        self._dynamic_batch = not isinstance(image.shape[0], int)

    # -- images ---------------------------------------------------------------------------------

    @property
    def scale(self) -> int | None:
        """The model's fixed scale, or None when it takes the scale at run time."""
        return self.spec.scale

    def __call__(self, image, scale=None, color: str = "rgb", tile: int | None = None) -> np.ndarray:
        """Upscale one image; returns HxWx3 uint8 in ``color`` order (the order ``image`` is in)."""
        rgb = to_rgb(image, color)
        scale = self.pipeline.check_scale(scale)
        return self._upscale(rgb[None], scale, color, tile)[0]

    def predict_batch(self, images: Iterable, scale=None, color: str = "rgb", batch_size: int = 8) -> list[np.ndarray]:
        """Upscale many images. Every image is checked before any runs, so a bad one costs nothing.

        Images of one size run as one batch when the model has a dynamic batch axis.
        """
        scale = self.pipeline.check_scale(scale)
        rgbs = []
        for index, image in enumerate(images):
            try:
                rgbs.append(to_rgb(image, color))
            except InputError as exc:
                raise InputError(f"images[{index}]: {exc}") from exc
        step = max(1, int(batch_size)) if self._dynamic_batch else 1
        by_size: dict[tuple, list[int]] = defaultdict(list)
        for index, rgb in enumerate(rgbs):
            by_size[rgb.shape].append(index)
        results: list[np.ndarray | None] = [None] * len(rgbs)
        for indices in by_size.values():
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                batch = np.stack([rgbs[i] for i in chunk])
                for i, out in zip(chunk, self._upscale(batch, scale, color)):
                    results[i] = out
        return results

    def _upscale(self, batch: np.ndarray, scale: int, color: str, tile: int | None = None) -> np.ndarray:
        prepared = self.pipeline.prepare(batch, scale)
        session = self._open_session()
        if tile is not None:
            # run_tiled cuts windows out of one named tensor; here that tensor is the model-space one.
            def run(window):
                return {"out": self.pipeline.run_tensor(session, window["tensor"], scale)}

            out = run_tiled(run, {"tensor": prepared.tensor}, "tensor", "out", scale, tile)["out"]
        else:
            out = self.pipeline.run_tensor(session, prepared.tensor, scale)
        return self.pipeline.finish(out, prepared, bgr=color == "bgr")

    # -- raw tensors ------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The backend's session, for engine-specific inspection (e.g. ORT's providers)."""
        return self._open_session()

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(self._open_session().inputs)

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return tuple(self._open_session().outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the engine on raw tensors, no pre/post. Names, dtypes and shapes are checked."""
        session = self._open_session()
        check_feeds(feeds, session.inputs)
        return session.run(feeds)

    def _input(self, name: str) -> TensorInfo:
        return next(i for i in self._open_session().inputs if i.name == name)

    # -- lifetime ---------------------------------------------------------------------------------

    def _open_session(self) -> Session:
        if self._session is None:
            raise SDKError("this Predictor is closed; create a new one")
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._session is not None else ", closed"
        return f"Predictor(model={self.model.name!r}, backend={self.backend!r}, device={self.device!r}{state})"


def check_feeds(feeds: Mapping[str, np.ndarray], inputs: Iterable[TensorInfo]) -> None:
    """InputError unless ``feeds`` has exactly the model's inputs with fitting dtypes and shapes."""
    inputs = list(inputs)
    if not isinstance(feeds, Mapping):
        raise InputError(f"feeds must be a dict of input name -> numpy array, not {type(feeds).__name__}")
    expected = {i.name for i in inputs}
    if set(feeds) != expected:
        missing, unknown = sorted(expected - set(feeds)), sorted(set(feeds) - expected)
        raise InputError(f"feeds must name exactly the model's inputs {sorted(expected)}; missing {missing}, unknown {unknown}")
    for info in inputs:
        value = feeds[info.name]
        if not isinstance(value, np.ndarray):
            raise InputError(f"feed {info.name!r} is a {type(value).__name__}; pass a numpy array")
        if value.dtype != info.dtype:
            raise InputError(f"feed {info.name!r} is {value.dtype}; the model wants {info.dtype} (use .astype(np.{info.dtype}))")
        fits = len(value.shape) == len(info.shape) and all(
            not isinstance(want, int) or want == got for want, got in zip(info.shape, value.shape)
        )
        if not fits:
            shown = ["?" if not isinstance(d, int) else d for d in info.shape]
            raise InputError(f"feed {info.name!r} has shape {list(value.shape)}; the model wants {shown} (? = any)")
