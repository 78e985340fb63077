"""The backend contract: what a plugin gives the SDK.

A plugin's ``sdk_backends()`` hook returns :class:`Backend` instances. The SDK asks each one whether
it can run on a device (:meth:`Backend.probe`) and, when chosen, for a :class:`Session` on a model.
Backends import their engine library lazily, inside ``_probe`` and ``create_session``, so that
loading plugins stays cheap.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PluginError
from .graph.tensors import TensorInfo  # part of the plugin contract: sessions describe their tensors with it
from .stdio import stdout_to_stderr

if TYPE_CHECKING:  # only for annotations: the core never needs these at import time
    from .cancel import CancelToken
    from .devices import Device
    from .model import Model

_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")
DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on one device, and if not, why (a sentence naming the fix)."""

    ok: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def yes(cls, **details: Any) -> Availability:
        """Available, with what the probe found (versions, providers) as ``details``."""
        return cls(True, "", details)

    @classmethod
    def no(cls, reason: str, **details: Any) -> Availability:
        """Not available, and why in words a user can act on."""
        return cls(False, reason, details)


class Session(ABC):
    """A model loaded on one backend and device, ready to run feeds of numpy arrays."""

    inputs: Sequence[TensorInfo]
    outputs: Sequence[TensorInfo]

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. ``feeds`` are already validated against :attr:`inputs` by the caller."""

    def run_cancellable(self, feeds: Mapping[str, np.ndarray], cancel: CancelToken) -> dict[str, np.ndarray]:
        """Run once unless ``cancel`` is called off; raise :class:`sdk.Cancelled` if it is. The default
        checks before and after the call; an engine that can stop part-way through a run overrides this
        to stop when the token is cancelled (``cancel.watch(stop)``), so a deadline bounds its work."""
        cancel.check()
        outputs = self.run(feeds)
        cancel.check()  # called off meanwhile: the caller no longer wants this result
        return outputs

    def close(self) -> None:
        """Free engine resources. Calling it twice is harmless."""

    def release_memory(self) -> None:
        """Give back memory the engine keeps between runs for the next one (an arena grown by a large
        run). Optional: the default does nothing. A server calls it when idle after a large request."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class RawRunner:
    """The bare engine, set up exactly as the backend sets it up for a Session, with no SDK code on
    the call path: what the benchmark's "raw" row times, so that the SDK's overhead shows.

    ``run(feeds)`` is the engine call alone, on feeds prepared beforehand; it may return the outputs
    in the engine's own form. ``outputs(result)`` turns that into ``{name: numpy array}`` (untimed,
    for the accuracy check). ``description`` says in one line what the baseline is.
    """

    run: Callable[[Mapping[str, np.ndarray]], Any]
    outputs: Callable[[Any], dict[str, np.ndarray]]
    description: str
    close: Callable[[], None] = lambda: None


class Backend(ABC):
    """A way to run ONNX models: one engine on one or more kinds of device.

    Subclasses set ``name`` (lower case, unique across all installed plugins), ``devices`` (device
    kinds it can use: "cpu", "cuda") and ``priority`` (higher wins when ``backend="auto"``), and
    implement ``_probe`` and ``create_session``.
    """

    name: str = ""
    devices: tuple[str, ...] = ()
    priority: int = 0
    # Names of the **options create_session understands; None: ask accepts() (open-ended sets).
    options: tuple[str, ...] | None = ()

    def __init__(self) -> None:
        self._probe_cache: dict[str, Availability] = {}
        self._probe_lock = threading.Lock()

    def validate(self) -> None:
        """Check the class attributes; the plugin loader calls this and records a failure."""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise PluginError(f"backend name {self.name!r} must be lower case: letters, digits, '-', '_', '.'")
        if not self.devices or any(kind not in DEVICE_KINDS for kind in self.devices):
            raise PluginError(f"backend {self.name!r}: devices {self.devices!r} must be a subset of {DEVICE_KINDS}")
        if not isinstance(self.priority, int):
            raise PluginError(f"backend {self.name!r}: priority must be an int, got {self.priority!r}")

    def probe(self, device: Device) -> Availability:
        """Can this backend run on ``device``? Cached per device; never raises."""
        key = str(device)
        with self._probe_lock:
            if key not in self._probe_cache:
                if device.kind not in self.devices:
                    found = Availability.no(f"{self.name} runs on {', '.join(self.devices)}, not {device.kind}")
                else:
                    try:
                        with stdout_to_stderr():  # an engine's start-up chatter must not corrupt --json output
                            found = self._probe(device)
                    except Exception as exc:  # a broken engine must not take the host down
                        found = Availability.no(f"probe failed: {type(exc).__name__}: {exc}")
                self._probe_cache[key] = found
            return self._probe_cache[key]

    def accepts(self, option: str) -> bool:
        """Does create_session understand this option? ``backend="auto"`` skips backends that
        would not, so that an engine-specific option chooses among engines instead of failing."""
        return self.options is None or option in self.options

    @abstractmethod
    def _probe(self, device: Device) -> Availability:
        """Check, cheaply, that the engine is installed and works on ``device``."""

    @abstractmethod
    def create_session(self, model: Model, device: Device, options: Mapping[str, Any]) -> Session:
        """Load ``model`` on ``device``. Raise BackendUnavailableError when it cannot run after all."""

    def server_options(self, device: Device) -> Mapping[str, Any]:
        """Options for ``create_session`` that suit a long-running server on ``device`` (``sdk serve``
        opens its Predictor with them when this backend is the first to try). A server's engine calls
        alternate with Python work on other threads, and it stays up for days: an engine that
        spin-waits between calls or keeps every buffer it ever grew may want other settings there than
        in a one-off job. The default asks for nothing; every option named must be one this backend
        ``accepts``."""
        return {}

    def concurrent_options(self, device: Device, calls: int) -> Mapping[str, Any] | None:
        """Options for ``create_session`` under which ``calls`` engine calls (``Session.run`` from as
        many threads) run at once on ``device``, each on its share of it, or None (the default): this
        backend runs one call at a time. A video job asks for one call per core on the CPU
        (``sdk.video.open_predictor``), where one single-threaded call per core keeps the cores busier
        beside the codecs than one call split over all of them; it opens the backend with these options
        on top of :meth:`server_options`, and makes one call at a time when this returns None. Every
        option named must be one this backend ``accepts``."""
        return None

    def raw_runner(self, model: Model, device: Device, options: Mapping[str, Any]) -> RawRunner | None:
        """The bare engine on ``model`` for the benchmark's raw row, or None (the default) when the
        backend offers no such baseline. ``model`` is the file the backend's Session would get (the
        optimised one), so the raw row differs from the SDK row by the SDK's own work only."""
        return None

    @classmethod
    def offers_raw_runner(cls) -> bool:
        """Whether this backend overrides :meth:`raw_runner` (the benchmark then has a raw row for it)."""
        return cls.raw_runner is not Backend.raw_runner

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} devices={self.devices} priority={self.priority}>"
