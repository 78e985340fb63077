"""The Predictor: one model on one backend, images in, images out."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np

from . import memory, planning, tiling
from .backend import Session
from .cancel import CancelToken
from .devices import parse_device
from .errors import InputError, SDKError
from .feeds import check_feeds
from .graph.tensors import TensorInfo
from .images import to_rgb
from .model import Model
from .pipeline import Pipeline, Prepared
from .progress import progress_bar
from .resolution import check_declared, resolve, warn_about_guesses
from .selection import normalize_name, open_session
from .spec import PipelineSpec
from .tiling import Plan
from .tuning import Trial

if TYPE_CHECKING:
    from PIL.Image import Image

# What the public methods take, named once (users' type checkers read these through py.typed).
ImageSource: TypeAlias = "np.ndarray | Image | str | os.PathLike[str] | bytes | IO[bytes]"
Scale: TypeAlias = "int | None"  # None: the model's fixed scale
Tile: TypeAlias = "int | str | None"  # "auto" (or None), 0 (never) or a window side in input pixels
Progress: TypeAlias = "Callable[[int, int], object] | bool | None"  # callable(done, total), or True for a bar

TRIAL_SIDE = 64  # pixels: enough for the engines' per-pixel speed to show, small enough to be quick


class Predictor:
    """Run an upscaling model on the best (or the named) backend.

    >>> p = Predictor("srcnn3", backend="ort-cpu")
    >>> hi = p(lo, scale=3)           # HxWx3 uint8 -> 3Hx3Wx3 uint8 (uint16 -> uint16)

    Parameters:
        model: a path to an ``.onnx`` file, or the name of a bundled model ("srcnn", "srcnn3", "espcn").
        backend: "auto" (the fastest backend that really runs here, measured on the model) or a backend's
            name ("ort-cpu", "ort-cuda", "trt", a plugin's). A named backend that cannot run raises
            :class:`~sdk.BackendUnavailableError` with the reason; it never falls back silently.
        device: "auto", "cpu", "cuda" or "cuda:N".
        pipeline: pipeline fields (value range, colour order, layout, scale, ...), as a dict or a
            :class:`~sdk.PipelineSpec`, that override what the model file says and what the SDK
            infers from its graph; ``sdk info MODEL`` shows each field and where it came from.
        memory_budget: bytes, or a text such as "2GiB", that one run's activations may take; larger
            images run as tiles. None: $SDK_MEMORY_BUDGET, else a share of the free memory.
        options: passed to the backend's session (e.g. ``threads=2``); ``backend="auto"`` skips the
            backends that do not understand one.

    Raises :class:`~sdk.ModelError` for a model it cannot read, :class:`~sdk.InputError` for bad arguments.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: str = "auto",
        device: str = "auto",
        pipeline: Mapping[str, Any] | PipelineSpec | None = None,
        memory_budget: int | str | None = None,
        **options: Any,
    ) -> None:
        normalize_name(backend)  # a bad backend or budget argument fails before the model is read
        self._budget = memory.parse_size(memory_budget) if memory_budget is not None else None
        self.model = Model(model)
        resolution = resolve(self.model, pipeline)
        self.model.declared = check_declared(pipeline)
        self.spec = resolution.spec
        self.spec_sources = dict(resolution.sources)  # field -> declared / metadata / inferred / default
        warn_about_guesses(resolution, self.model.name)
        self.pipeline = Pipeline(self.spec, self.model)
        chosen = open_session(self.model, backend, parse_device(device), options, trial=self._trial())
        self._session: Session | None = chosen.session
        self.backend, self.device = chosen.backend, str(chosen.device)
        # auto's measured ranking (sdk.tuning): fastest first, with each engine's trial time; None when
        # the backend was named, only one could run, or tune=False.
        self.ranking = chosen.ranking
        self.concurrent_calls = 1  # engine calls its session was opened to run at once (sdk.sharing)
        image = self._input(self.spec.image_input)
        self._dynamic_batch = not isinstance(image.shape[0], int)
        self.memory_budget = memory_budget
        self._planner = planning.Planner(
            self.model, self.spec, self.pipeline.static_size, self.device, self._budget, self._dynamic_batch
        )

    def _trial(self) -> Trial:
        """What ``backend="auto"`` times the engines on: one small noise image through the pipeline,
        at the model's own size when its input is fixed, at the model's scale (or x2)."""
        image = self.model.input(self.spec.image_input)
        spatial = image.shape[1:3] if self.spec.layout == "NHWC" else image.shape[2:4]
        step = self.spec.multiple_of
        side = -(-TRIAL_SIDE // step) * step
        height, width = (d if isinstance(d, int) else side for d in spatial)
        scale = self.spec.scale or 2

        pixels = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        prepared = self.pipeline.prepare(pixels, scale)

        def pictures(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
            return self.pipeline.finish(self.pipeline.output(outputs, prepared.tensor.shape, scale), prepared)

        return Trial(
            lambda: self.pipeline.feeds(prepared.tensor, scale), f"{height}x{width} noise, x{scale}, batch 1", pictures
        )

    # -- images ---------------------------------------------------------------------------------

    @property
    def scale(self) -> int | None:
        """The model's fixed scale, or None when it takes the scale at run time."""
        return self.spec.scale

    @property
    def dynamic_batch(self) -> bool:
        """Whether the model takes a batch of any size (else one image or window per engine call)."""
        return self._dynamic_batch

    def check_scale(self, scale: Scale = None) -> int:
        """The scale a call runs at: ``scale`` checked against the model (None: its fixed scale), or an
        InputError naming what to pass."""
        return self.pipeline.check_scale(scale)

    def __call__(
        self,
        image: ImageSource,
        scale: Scale = None,
        color: str = "rgb",
        tile: Tile = "auto",
        progress: Progress = None,
        orient: bool = True,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """Upscale one image; returns HxWx3 pixels in ``color`` order (the order ``image`` is in) and
        in its dtype: uint8, or uint16 (0..65535) for a 16-bit array, whose precision is kept throughout.

        tile: "auto" runs tiles only when the whole image would exceed the memory budget; N runs
        tiles of N x N input pixels; 0 never tiles. progress: a callable(done, total) told after each
        batch of tiles, or True for a progress bar. orient=False keeps a file's pixels as stored
        instead of turning them upright by EXIF orientation. cancel: a :class:`~sdk.CancelToken` that
        calls the work off (from another thread, or at its deadline) with :class:`~sdk.Cancelled`:
        checked before each engine call, and a running one is stopped where the engine can (ort-*).
        """
        tile = tiling.parse_tile(tile)
        rgb = to_rgb(image, color, orient=orient)
        scale = self.pipeline.check_scale(scale)
        batch = rgb[None]
        plan = self._planner.plan(batch.shape[:3], scale, tile)
        result: np.ndarray = self._run_plan(batch, scale, plan, color == "bgr", progress, cancel)[0]
        return result

    def predict_batch(
        self,
        images: Iterable[ImageSource],
        scale: Scale = None,
        color: str = "rgb",
        batch_size: int = 8,
        tile: Tile = "auto",
        cancel: CancelToken | None = None,
    ) -> list[np.ndarray]:
        """Upscale many images. Every image is checked before any runs, so a bad one costs nothing.

        Images of one size run as one batch when the model has a dynamic batch axis. ``cancel`` as for a call.
        """
        scale = self.pipeline.check_scale(scale)
        tile = tiling.parse_tile(tile)
        rgbs = []
        for index, image in enumerate(images):
            try:
                rgbs.append(to_rgb(image, color))
            except InputError as exc:
                raise InputError(f"images[{index}]: {exc}") from exc
        step = max(1, int(batch_size)) if self._dynamic_batch else 1
        by_size: dict[tuple[tuple[int, ...], np.dtype[Any]], list[int]] = defaultdict(list)
        for index, rgb in enumerate(rgbs):
            by_size[(rgb.shape, rgb.dtype)].append(index)
        results: list[np.ndarray | None] = [None] * len(rgbs)
        for indices in by_size.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                batch = np.stack([rgbs[i] for i in chunk])
                plan = self._planner.plan(batch.shape[:3], scale, tile)
                for i, out in zip(chunk, self._run_plan(batch, scale, plan, color == "bgr", cancel=cancel)):
                    results[i] = out
        return cast(list[np.ndarray], results)  # every index was in one chunk: no None is left

    # -- planning, and running what was planned ---------------------------------------------------

    def plan(
        self,
        size: tuple[int, int],
        scale: Scale = None,
        tile: Tile = "auto",
        *,
        count: int = 1,
        max_batch: int | None = None,
        max_batch_pixels: int | None = None,
        held: int = 0,
    ) -> Plan:
        """How ``count`` images of ``size`` (height, width) run at ``scale``, decided before any engine
        call: whole, or as windows with their margin of context, and how many per engine call.

        The one place for the rules every caller follows (the Predictor's own calls, folder jobs,
        Ray, the server, video): the result must fit in free memory (else :class:`TooLargeError`),
        ``tile`` as for a call ("auto": windows only when the whole run would exceed the memory
        budget; N: windows of N x N input pixels plus the margin; 0: whole; a static-size model always
        runs windows of exactly its size), the margin derived from the graph at this scale, and
        ``batch`` no more than the budget holds, ``max_batch`` (default 16) and ``max_batch_pixels``
        input pixels (None: no such cap), 1 without a dynamic batch axis. The memory budget bounds the
        whole call: ``held`` bytes the caller keeps for it (a server: the request's body, its decoded
        pixels, the encoded answer), the result the windows are stitched into and one engine call; a
        window that ``tile`` asks for but the budget cannot hold is made smaller. Run it with
        :meth:`run_plan`, or window by window with :meth:`prepare`, :meth:`run_tensor` and :meth:`finish`.
        """
        height, width = planning.check_size(size)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise InputError(f"count={count!r}: pass how many images of this size run together (1 or more)")
        limit = planning.MAX_BATCH if max_batch is None else max(1, int(max_batch))
        shape = (int(count), height, width)
        return self._planner.plan(
            shape, self.check_scale(scale), tiling.parse_tile(tile), limit, max_batch_pixels, max(0, int(held))
        )

    def run_plan(
        self,
        images: np.ndarray,
        scale: Scale,
        plan: Plan,
        color: str = "rgb",
        progress: Progress = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """N x H x W x 3 images (of the size ``plan`` was made for; uint8, or uint16 kept 16-bit) -> N x sH
        x sW x 3 of the same dtype, run as ``plan`` says. ``color`` is the images' order ("rgb" or "bgr");
        ``progress`` and ``cancel`` as for a call."""
        images = np.asarray(images)
        if images.dtype not in (np.uint8, np.uint16) or images.ndim != 4 or images.shape[3] != 3:
            raise InputError(f"images must be N x H x W x 3 uint8 or uint16, not {images.dtype} {list(images.shape)}")
        if not plan.tiled and tuple(images.shape[1:3]) != tuple(plan.window):
            raise InputError(
                f"this plan runs {plan.window[0]}x{plan.window[1]} images whole; plan again for "
                f"{images.shape[1]}x{images.shape[2]}"
            )
        return self._run_plan(images, self.check_scale(scale), plan, color == "bgr", progress, cancel)

    def _run_plan(
        self,
        images: np.ndarray,
        scale: int,
        plan: Plan,
        bgr: bool,
        progress: Progress = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        if not plan.tiled and len(images) <= plan.batch:
            return self._run_windows(images, scale, bgr, cancel)  # the common case: one engine call
        with progress_bar(progress) as report:
            return tiling.upscale_tiled(
                images, scale, plan, lambda windows: self._run_windows(windows, scale, bgr, cancel), report, cancel
            )

    def run_windows(
        self, windows: np.ndarray, scale: Scale, color: str = "rgb", cancel: CancelToken | None = None
    ) -> np.ndarray:
        """N x h x w x 3 -> N x sh x sw x 3 (uint8, or uint16 kept 16-bit): the whole pipeline on exactly
        this batch, in one engine call (no planning: the caller has sized it, e.g. by :meth:`plan`)."""
        return self._run_windows(windows, self.check_scale(scale), color == "bgr", cancel)

    def _run_windows(self, batch: np.ndarray, scale: int, bgr: bool, cancel: CancelToken | None) -> np.ndarray:
        pipeline = self.pipeline
        prepared = pipeline.prepare(batch, scale)
        out = pipeline.run_tensor(self._session or self._open_session(), prepared.tensor, scale, cancel)
        return pipeline.finish(out, prepared, bgr=bgr)

    # The three steps of run_windows, for callers that batch many requests' windows into one engine
    # call (the server): prepare and finish run on any thread, run_tensor where the engine runs.

    def prepare(self, windows: np.ndarray, scale: int) -> Prepared:
        """N x h x w x 3 uint8 RGB -> the model-space tensor (``.tensor``: N x C x h x w float32) and
        what :meth:`finish` needs. ``scale`` must be checked (:meth:`check_scale`)."""
        return self.pipeline.prepare(windows, scale)

    def run_tensor(self, tensor: np.ndarray, scale: int, cancel: CancelToken | None = None) -> np.ndarray:
        """Model-space tensors (prepared ones, stacked) -> N x C x sh x sw float32 model output."""
        return self.pipeline.run_tensor(self._open_session(), tensor, scale, cancel)

    def finish(self, out: np.ndarray, prepared: Prepared, color: str = "rgb") -> np.ndarray:
        """run_tensor's output (consumed) for ``prepared`` -> N x sh x sw x 3 uint8 in ``color`` order."""
        return self.pipeline.finish(out, prepared, bgr=color == "bgr")

    # -- raw tensors ------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The backend's session, for engine-specific inspection (e.g. ORT's providers)."""
        return self._open_session()

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """The model's inputs as the running session describes them (names, shapes, dtypes)."""
        return tuple(self._open_session().inputs)

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """The model's outputs as the running session describes them."""
        return tuple(self._open_session().outputs)

    def run(self, feeds: Mapping[str, np.ndarray], cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
        """Run the engine on raw tensors, no pre/post. Names, dtypes and shapes are checked; ``cancel``
        as for a call."""
        session = self._open_session()
        check_feeds(feeds, session.inputs)
        return session.run(feeds) if cancel is None else session.run_cancellable(feeds, cancel)

    def _input(self, name: str) -> TensorInfo:
        return next(i for i in self._open_session().inputs if i.name == name)

    # -- lifetime ---------------------------------------------------------------------------------

    def _open_session(self) -> Session:
        if self._session is None:
            raise SDKError("this Predictor is closed; create a new one")
        return self._session

    def close(self) -> None:
        """Release the backend's session (its engine memory); later calls raise SDKError. Idempotent."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._session is not None else ", closed"
        return f"Predictor(model={self.model.name!r}, backend={self.backend!r}, device={self.device!r}{state})"
