"""Choosing the backend and device a Predictor runs on, and listing what could run.

An explicitly named backend runs on its device or raises; only ``backend="auto"`` chooses: among the
backends whose probe says they really work here, by a short measurement on the model when more than
one can run it (``sdk.tuning``; cached on disk), else by priority.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .backend import Availability, Backend, Session
from .devices import Device, cuda_gpus
from .errors import BackendUnavailableError, InputError
from .optimize import OPTION as OPTIMIZE
from .plugins import BackendRecord, Registry, load_plugins
from .stdio import stdout_to_stderr
from .tuning import OPTION as TUNE
from .tuning import Ranking, RankingCache, Trial, measure, ranking_key, split_option

if TYPE_CHECKING:
    from .model import Model

log = logging.getLogger(__name__)
AUTO = "auto"
SDK_OPTIONS = (OPTIMIZE, TUNE)  # taken by the SDK itself (sdk.optimize, sdk.tuning): every backend accepts them


@dataclass(frozen=True)
class BackendInfo:
    """One line of ``sdk backends``: a discovered backend, or a plugin that failed to load."""

    name: str
    distribution: str
    version: str
    devices: list[str]
    priority: int | None
    available: bool
    reason: str
    plugin: str = ""
    load_error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as ``sdk backends --json`` prints it."""
        return asdict(self)


def default_devices(backend: Backend) -> list[Device]:
    """The devices a backend would use when none is named: the first GPU first, then the CPU."""
    order = []
    if "cuda" in backend.devices:
        order.append(Device("cuda", 0))
    if "cpu" in backend.devices:
        order.append(Device("cpu"))
    return order


def availability(backend: Backend, device: Device | None = None) -> tuple[Availability, Device | None]:
    """The first device (``device``, or the backend's defaults) the backend can run on."""
    candidates = [device] if device is not None else default_devices(backend)
    reasons = []
    for candidate in candidates:
        found = backend.probe(candidate)
        if found.ok:
            return found, candidate
        reasons.append(found.reason)
    return Availability.no("; ".join(dict.fromkeys(reasons))), None


def list_backends(device: Device | None = None, registry: Registry | None = None) -> list[BackendInfo]:
    """Every discovered backend with whether it can run here, then every plugin that failed."""
    registry = registry or load_plugins()
    infos = []
    for record in registry.by_priority():
        found, _ = availability(record.backend, device)
        infos.append(_info(record, found))
    for failure in registry.failures:
        infos.append(
            BackendInfo(
                name=failure.plugin,
                distribution=failure.distribution,
                version=failure.version,
                devices=[],
                priority=None,
                available=False,
                reason=f"plugin failed to load: {failure.error}",
                plugin=failure.plugin,
                load_error=failure.error,
            )
        )
    return infos


def _info(record: BackendRecord, found: Availability) -> BackendInfo:
    backend = record.backend
    return BackendInfo(
        name=backend.name,
        distribution=record.distribution,
        version=record.version,
        devices=list(backend.devices),
        priority=backend.priority,
        available=found.ok,
        reason=found.reason,
        plugin=record.plugin,
        details=dict(found.details),
    )


def normalize_name(backend: object) -> str:
    """A backend name as the registry spells it (lower case); ``"AUTO"`` is ``"auto"``."""
    if not isinstance(backend, str) or not backend.strip():
        raise InputError(f"backend must be a name such as 'auto', 'ort-cpu' or 'trt', not {backend!r}")
    return backend.strip().lower()


@dataclass(frozen=True)
class Chosen:
    """The session a Predictor runs on, and which backend and device it came from."""

    session: Session
    backend: str
    device: Device
    ranking: Ranking | None = None  # auto's measured ranking, when it measured (or found one cached)


def create_session(backend: Backend, model: Model, device: Device, options: Mapping[str, Any]) -> Session:
    """The one place where the SDK asks a backend for a session: on the optimised model (sdk.optimize)."""
    from .optimize import optimized_session

    with stdout_to_stderr():  # ORT prints its provider-fallback banner to stdout, as some engines do
        return optimized_session(backend, model, device, options)


def open_session(
    model: Model,
    backend: str,
    device: Device | None,
    options: Mapping[str, Any],
    registry: Registry | None = None,
    trial: Trial | None = None,
) -> Chosen:
    """A session for ``model`` on the named backend, or on the best one that starts for ``"auto"``.

    "auto" measures the available backends on ``trial`` when more than one can run the model (unless
    ``tune=False``; see sdk.tuning), else tries them by priority. A backend that does not take one of
    ``options`` (precision="fp16" is TensorRT's) is passed over, so a backend-specific option chooses
    among backends; one whose session fails to start is passed over with a warning (a quiet fallback
    is what users hate). A named backend runs or raises BackendUnavailableError: it never falls back.
    """
    name = normalize_name(backend)
    tune, options = split_option(options)
    skipped, pairs = [], []
    for candidate, chosen in candidates(name, device, registry):
        foreign = [key for key in options if key not in SDK_OPTIONS and not candidate.accepts(key)]
        if name == AUTO and foreign:
            log.info("backend %s does not take option(s) %s; trying the next one", candidate.name, foreign)
            skipped.append(f"{candidate.name} on {chosen}: does not take option(s) {foreign}")
            continue
        pairs.append((candidate, chosen))
    if name == AUTO and tune and trial is not None and len(pairs) > 1:
        key = ranking_key(model, pairs, options, trial, (registry or load_plugins()).backends)
        cache = RankingCache()
        ranking = cache.get(key)
        if ranking is None:
            ranking, (winner, chosen), session = measure(
                pairs, lambda b, d: create_session(b, model, d, options), trial, key
            )
            cache.put(ranking)
            return Chosen(session, winner.name, chosen, ranking)
        order = ranking.order()
        position = {pair: index for index, pair in enumerate(order)}
        pairs.sort(key=lambda pair: position.get((pair[0].name, str(pair[1])), len(order)))
        found = _first_that_starts(name, pairs, model, options, skipped)
        return Chosen(found.session, found.backend, found.device, ranking)
    return _first_that_starts(name, pairs, model, options, skipped)


def _first_that_starts(
    name: str, pairs: list[tuple[Backend, Device]], model: Model, options: Mapping[str, Any], skipped: list[str]
) -> Chosen:
    for candidate, chosen in pairs:
        try:
            session = create_session(candidate, model, chosen, options)
        except BackendUnavailableError as exc:
            if name != AUTO:
                raise
            log.warning("backend %s on %s could not start (%s); trying the next one", candidate.name, chosen, exc)
            skipped.append(f"{candidate.name} on {chosen}: {exc}")
            continue
        return Chosen(session, candidate.name, chosen)
    raise BackendUnavailableError("no backend could start:\n  " + "\n  ".join(skipped))


def candidates(name: str, device: Device | None, registry: Registry | None = None) -> list[tuple[Backend, Device]]:
    """The (backend, device) pairs to try, best first; raises when there is none.

    For a named backend that is one pair or an error; for "auto" every available backend by priority,
    so that the Predictor can go on to the next one when creating a session fails after all.
    """
    registry = registry or load_plugins()
    name = normalize_name(name)
    if name != AUTO:
        return [_named(name, device, registry)]
    found, reasons = [], []
    for record in registry.by_priority():
        ok, chosen = availability(record.backend, device)
        if ok.ok and chosen is not None:  # (a device is chosen whenever one is ok)
            found.append((record.backend, chosen))
        else:
            reasons.append(f"  {record.backend.name}: {ok.reason}")
    if not found:
        where = f" on {device}" if device else ""
        listing = "\n".join(reasons + [f"  plugin {f.plugin} ({f.distribution}): {f.error}" for f in registry.failures])
        raise BackendUnavailableError(
            f"no backend can run{where}:\n{listing or '  (no backends installed)'}\n"
            "Install one (pip install 'deploy-sdk[cpu]' gives ONNX Runtime) or choose another device."
        )
    return found


def _named(name: str, device: Device | None, registry: Registry) -> tuple[Backend, Device]:
    record = registry.get(name)
    if record is None:
        failed = next((f for f in registry.failures if f.plugin == name), None)
        if failed:
            raise BackendUnavailableError(f"backend {name!r}: its plugin failed to load ({failed.error})")
        known = ", ".join(sorted(registry.backends)) or "none"
        raise BackendUnavailableError(
            f"unknown backend {name!r}; installed backends: {known}. Use 'auto', one of those, "
            "or install the plugin that provides it (see `sdk backends`)"
        )
    found, chosen = availability(record.backend, device)
    if not found.ok or chosen is None:  # (a device is chosen whenever one is ok)
        where = f" on {device}" if device else ""
        raise BackendUnavailableError(f"backend {name!r} cannot run{where}: {found.reason}")
    return record.backend, chosen


def gpu_summary() -> list[dict[str, Any]]:
    """The GPUs found, for ``sdk backends`` and benchmark records."""
    return [
        {
            "index": g.index,
            "name": g.name,
            "compute_capability": "%d.%d" % g.compute_capability,
            "memory_gib": round(g.memory_bytes / 2**30, 1),
            "uuid": g.uuid,  # "MIG-..." for a MIG slice
            "pci_bus_id": g.pci_bus_id,
        }
        for g in cuda_gpus()
    ]
