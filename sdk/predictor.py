"""The Predictor: one model on one backend, images in, images out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import memory, tiling
from .backend import Session, TensorInfo
from .devices import parse_device
from .errors import InputError, SDKError
from .footprint import footprint
from .images import to_rgb
from .model import Model
from .pipeline import Pipeline
from .selection import normalize_name, open_session
from .spec import resolve, warn_about_guesses

_SCALES_KEPT = 64


class Predictor:
    """Run an upscaling model on the best (or the named) backend.

    >>> p = Predictor("srcnn3", backend="ort-cpu")
    >>> hi = p(lo, scale=3)           # HxWx3 uint8 -> 3Hx3Wx3 uint8 (uint16 -> uint16)
    """

    def __init__(
        self,
        model,
        backend: str = "auto",
        device: str = "auto",
        pipeline: Mapping[str, Any] | None = None,
        memory_budget=None,
        **options: Any,
    ):
        normalize_name(backend)  # a bad backend or budget argument fails before the model is read
        self._budget = memory.parse_size(memory_budget) if memory_budget is not None else None
        self.model = Model(model)
        resolution = resolve(self.model, pipeline)
        self.spec = resolution.spec
        self.spec_sources = dict(resolution.sources)  # field -> declared / metadata / inferred / default
        warn_about_guesses(resolution, self.model.name)
        chosen = open_session(self.model, backend, parse_device(device), options)
        self._session: Session | None = chosen.session
        self.backend, self.device = chosen.backend, str(chosen.device)
        self.pipeline = Pipeline(self.spec, self.model)
        image = self._input(self.spec.image_input)
        self._dynamic_batch = not isinstance(image.shape[0], int)
        self.memory_budget = memory_budget
        # scale -> (footprint, tile margin): both depend on the scale only, and are derived from the
        # graph, so a call looks them up instead of deriving or even keying them on the file again.
        self._sizing: dict[int, tuple] = {}

    # -- images ---------------------------------------------------------------------------------

    @property
    def scale(self) -> int | None:
        """The model's fixed scale, or None when it takes the scale at run time."""
        return self.spec.scale

    def __call__(
        self, image, scale=None, color: str = "rgb", tile="auto", progress=None, orient: bool = True
    ) -> np.ndarray:
        """Upscale one image; returns HxWx3 pixels in ``color`` order (the order ``image`` is in) and
        in its dtype: uint8, or uint16 (0..65535) for a 16-bit array, whose precision is kept throughout.

        tile: "auto" runs tiles only when the whole image would exceed the memory budget; N runs
        tiles of N x N input pixels; 0 never tiles. progress: a callable(done, total) told after each
        batch of tiles, or True for a progress bar. orient=False keeps a file's pixels as stored
        instead of turning them upright by EXIF orientation.
        """
        tile = tiling.check_tile(tile)
        rgb = to_rgb(image, color, orient=orient)
        scale = self.pipeline.check_scale(scale)
        return self._upscale(rgb[None], scale, color, tile, progress)[0]

    def predict_batch(
        self, images: Iterable, scale=None, color: str = "rgb", batch_size: int = 8, tile="auto"
    ) -> list[np.ndarray]:
        """Upscale many images. Every image is checked before any runs, so a bad one costs nothing.

        Images of one size run as one batch when the model has a dynamic batch axis.
        """
        scale = self.pipeline.check_scale(scale)
        tile = tiling.check_tile(tile)
        rgbs = []
        for index, image in enumerate(images):
            try:
                rgbs.append(to_rgb(image, color))
            except InputError as exc:
                raise InputError(f"images[{index}]: {exc}") from exc
        step = max(1, int(batch_size)) if self._dynamic_batch else 1
        by_size: dict[tuple, list[int]] = defaultdict(list)
        for index, rgb in enumerate(rgbs):
            by_size[(rgb.shape, rgb.dtype)].append(index)
        results: list[np.ndarray | None] = [None] * len(rgbs)
        for indices in by_size.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                batch = np.stack([rgbs[i] for i in chunk])
                for i, out in zip(chunk, self._upscale(batch, scale, color, tile)):
                    results[i] = out
        return results

    def _upscale(self, batch: np.ndarray, scale: int, color: str, tile="auto", progress=None) -> np.ndarray:
        bgr = color == "bgr"
        plan = self._plan(batch.shape[:3], scale, tile, batch.itemsize)
        if plan is None:
            return self._run_windows(batch, scale, bgr)
        with _progress_bar(progress) as report:
            return tiling.upscale_tiled(
                batch, scale, plan, lambda windows: self._run_windows(windows, scale, bgr), report
            )

    def _run_windows(self, batch: np.ndarray, scale: int, bgr: bool) -> np.ndarray:
        """N x h x w x 3 -> N x sh x sw x 3 (uint8 or uint16): the whole pipeline on exactly this batch."""
        pipeline = self.pipeline
        prepared = pipeline.prepare(batch, scale)
        out = pipeline.run_tensor(self._session or self._open_session(), prepared.tensor, scale)
        return pipeline.finish(out, prepared, bgr=bgr)

    def _plan(self, shape: tuple[int, int, int], scale: int, tile, itemsize: int = 1) -> tiling.Plan | None:
        """Refuse what cannot fit before any engine call, then choose the tiles (or none)."""
        n, height, width = shape
        out_bytes = n * height * scale * width * scale * 3 * itemsize
        room = memory.available()
        if out_bytes > room:
            raise InputError(
                f"the result would be {width * scale}x{height * scale} pixels ({memory.gib(out_bytes)} of pixels) for "
                f"{n} image(s), more than the {memory.gib(room)} of memory available; use a smaller scale or image"
            )
        found, margin = self._sizing.get(scale) or self._size(scale)
        budget = memory.budget(self._budget, self.device)
        if tile == 0 and found.derived and found.peak(n, height, width) > room:
            raise InputError(
                f"running {width}x{height} at x{scale} in one piece needs about {memory.gib(found.peak(n, height, width))}, "
                f"more than the {memory.gib(room)} available; use tile='auto' (the default) or a tile size"
            )
        return tiling.choose_plan(
            tile,
            shape,
            scale,
            found,
            budget,
            margin,
            self._dynamic_batch,
            static_size=self.pipeline.static_size,
            multiple_of=self.spec.multiple_of,
        )

    def _size(self, scale: int) -> tuple:
        """The footprint and tile margin at ``scale``, derived once (a benign race: two threads may
        both derive the same values)."""
        k = self.spec.multiple_of
        probe = self.pipeline.static_size or (-(-64 // k) * k,) * 2  # a size the model can really take
        sizing = (
            footprint(self.model, self.spec, scale, probe),
            tiling.margin_for(tiling.receptive_radius(self.model.proto, self.spec.image_input, scale)),
        )
        if len(self._sizing) >= _SCALES_KEPT:  # scales are few in practice; a flood of them must not grow this
            self._sizing.clear()
        self._sizing[scale] = sizing
        return sizing

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

    def __enter__(self) -> Predictor:
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


class _progress_bar:
    """``progress`` as the caller gave it: a callable, True for a rich bar on stderr, or nothing."""

    def __init__(self, progress):
        self.progress = progress
        self.bar = None

    def __enter__(self):
        if self.progress is True:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("tiles", total=None)
            return lambda done, total: self.bar.update(self.task, completed=done, total=total)
        return self.progress or None

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.stop()
