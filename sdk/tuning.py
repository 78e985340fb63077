"""``backend="auto"`` by measurement: the engines that can run a model here are timed on it, once.

Priorities are a guess made before the model is known: ONNX Runtime runs SRCNN fastest, OpenVINO an
RRDB. So the first time a model is loaded with ``backend="auto"`` and more than one engine can run
it, each engine gets a session and a short trial (one warm-up call, then a few calls in turn on a
small image, the best of each kept: other jobs on the machine only ever add time), and the fastest
wins. The ranking is stored on disk under everything it depends on - the model's content, the
options, the trial, this machine (CPU model, cores, GPUs) and each engine's distribution, version and
probe details - so later loads pay nothing, and a new engine version or another machine measures
again. An engine within ``TIE`` of the fastest keeps its place when it has the higher priority, so
that noise does not flip the choice between equals. Speed is not bought with pictures: an engine whose
trial pictures differ from the highest-priority engine's by more than ``AGREE`` grey levels (the
benchmark's PASS tolerance; MNN's Winograd convolutions did on SPAN, whose activations reach the
hundreds) is not chosen.

Which clock: wall time, except on a busy machine. When more jobs want the cores than there are
(the load average above the core count) and every candidate runs on the CPU, a call's wall time is
mostly its wait in the queue for the cores, and one engine's luck in that queue decides the order (a
SwinIR trial at load 28 on 2 cores took MNN, which costs 1.5x OpenVINO's CPU time). There the
engines are ranked by the CPU time a call costs the process: the work itself, which a contended
machine shares out fairly, and which a quiet one turns into wall time alike for engines that use
all the cores. The ranking records the clock it used.

``tune=False`` (or ``SDK_TUNE=0`` for a whole process) skips the trial and chooses by priority, as
before. A named backend is never measured nor second-guessed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BackendUnavailableError, InputError

log = logging.getLogger(__name__)

OPTION = "tune"  # in sdk.selection.SDK_OPTIONS: every backend accepts it
ENV_VAR = "SDK_TUNE"
TIE = 0.03  # a higher-priority engine this close to the fastest keeps its place
WARMUP, ROUNDS = 1, 5
BUDGET_S = 10.0  # the timed rounds stop early past this (after two), whatever the engines' speed
AGREE = 2  # uint8 levels an engine's trial pictures may differ from the highest-priority engine's
VERSION = 3  # of the trial and the record: part of the key (3: the clock chosen by the load)


@dataclass(frozen=True)
class Trial:
    """What each engine runs: ``feeds`` (made once, on demand) and a description for the key;
    ``pictures`` turns an engine's outputs into uint8 pictures, to check that the engines agree."""

    feeds: Callable[[], Mapping[str, Any]]
    description: str
    pictures: Callable[[Mapping[str, Any]], Any] | None = None


@dataclass
class Ranking:
    """The measured order: fastest first, with each engine's best trial time in ms."""

    entries: list[dict]  # {"backend", "device", "ms"} or {"backend", "device", "error"}
    chosen: str
    cached: bool = False
    trial: str = ""
    key: dict = field(default_factory=dict)
    clock: str = "wall"  # what "ms" is: "wall" time per call, or "cpu" time (a busy machine; see contended)

    def order(self) -> list[tuple[str, str]]:
        return [(e["backend"], e["device"]) for e in self.entries if e.get("ms") is not None]

    def to_dict(self) -> dict:
        return asdict(self)


def split_option(options: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(measure?, the other options); ``SDK_TUNE=0`` turns the default off for the process."""
    rest = dict(options)
    default = os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")
    tune = rest.pop(OPTION, default)
    if not isinstance(tune, bool):
        raise InputError(f"tune={tune!r} must be True (time the engines once and take the fastest) or False")
    return tune, rest


def machine() -> dict:
    """What a measured ranking is true of: this CPU, its core count and the GPUs."""
    from .devices import cpu_info, cuda_gpus

    return {
        "cpu": cpu_info().get("model name", "") or os.uname().machine,
        "cores": os.cpu_count() or 0,
        "gpus": [g.name for g in cuda_gpus()],
    }


def ranking_key(model, candidates, options: Mapping[str, Any], trial: Trial, records: Mapping[str, Any]) -> dict:
    """Everything a ranking depends on. ``records``: backend name -> its plugin record (versions)."""
    engines = []
    for backend, device in candidates:
        record = records.get(backend.name)
        engines.append(
            {
                "backend": backend.name,
                "device": str(device),
                "distribution": f"{record.distribution} {record.version}" if record else "?",
                "details": {k: str(v) for k, v in sorted(dict(backend.probe(device).details).items())},
            }
        )
    return {
        "version": VERSION,
        "model_sha256": model.sha256,
        "options": sorted((k, repr(v)) for k, v in options.items()),
        "trial": trial.description,
        "machine": machine(),
        "engines": engines,
    }


class RankingCache:
    """Rankings on disk, one JSON file per key digest, under ``<cache root>/tuning``."""

    def __init__(self, root: Path | None = None):
        from .optimize.cache import cache_root

        self.root = (Path(root) if root is not None else cache_root()) / "tuning"

    def _path(self, key: dict) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.root / f"{digest}.json"

    def get(self, key: dict) -> Ranking | None:
        try:
            record = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        if record.get("key") != json.loads(json.dumps(key)):
            return None  # a damaged or colliding entry: measure again
        return Ranking(
            record["entries"], record["chosen"], True, record.get("trial", ""), key, record.get("clock", "wall")
        )

    def put(self, ranking: Ranking) -> None:
        from .files import atomic_write

        self.root.mkdir(parents=True, exist_ok=True)
        record = {k: v for k, v in ranking.to_dict().items() if k != "cached"}
        atomic_write(self._path(ranking.key), json.dumps(record, indent=2) + "\n")


def contended() -> str | None:
    """Why wall times would rank engines by their luck in the queue for the cores, or None: the load
    average (runnable jobs, the last minute) above this machine's core count. None where the
    platform has no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = os.cpu_count() or 1  # the load average counts runnable threads against every logical CPU
    return f"load {load:.1f} on {cores} cores" if load > cores else None


def time_sessions(
    sessions: list[tuple[Any, Any]],
    feeds: Mapping[str, Any],
    clock=time.perf_counter,
    outputs: dict | None = None,
    cpu_clock=time.process_time,
) -> tuple[dict, dict]:
    """(wall, cpu): label -> best seconds per call on each clock, the sessions taking turns call by
    call (noise hits them alike). ``cpu`` is the process's CPU time over the call (every thread's).
    ``outputs``, when given, receives each session's warm-up outputs by label."""
    for label, session in sessions:
        for _ in range(WARMUP):
            result = session.run(feeds)
        if outputs is not None:
            outputs[label] = result
    wall = {label: float("inf") for label, _ in sessions}
    cpu = dict(wall)
    started = clock()
    for round_ in range(ROUNDS):
        shift = round_ % len(sessions)
        for label, session in sessions[shift:] + sessions[:shift]:
            start, used = clock(), cpu_clock()
            session.run(feeds)
            wall[label] = min(wall[label], clock() - start)
            cpu[label] = min(cpu[label], cpu_clock() - used)
        if round_ >= 1 and clock() - started > BUDGET_S:
            break
    return wall, cpu


def rank(times: dict, candidates: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Fastest first, except that the highest-priority engine (``candidates`` are in priority
    order) within TIE of the fastest goes first: noise between equals must not flip the choice."""
    order = sorted(candidates, key=times.__getitem__)
    first = next((p for p in candidates if times[p] <= times[order[0]] * (1 + TIE)), order[0])
    return [first] + [p for p in order if p != first]


def measure(
    candidates, create: Callable, trial: Trial, key: dict, clocks=(time.perf_counter, time.process_time)
) -> tuple[Ranking, Any, Any]:
    """Create a session on every candidate, time them, and keep the fastest one's session open.

    Returns (ranking, the chosen (backend, device), its session). Candidates whose session cannot
    start are ranked last with the reason; when none starts, BackendUnavailableError lists them.
    ``clocks``: (wall, CPU) time sources.
    """
    sessions, failed = [], []
    for backend, device in candidates:
        try:
            sessions.append(((backend.name, str(device)), (backend, device), create(backend, device)))
        except BackendUnavailableError as exc:
            log.warning("backend %s on %s could not start (%s); trying the next one", backend.name, device, exc)
            failed.append({"backend": backend.name, "device": str(device), "error": str(exc)})
    if not sessions:
        raise BackendUnavailableError(
            "no backend could start:\n  "
            + "\n  ".join(f"{f['backend']} on {f['device']}: {f['error']}" for f in failed)
        )
    try:
        outputs: dict = {}
        clock, busy = "wall", None
        if len(sessions) > 1:
            wall, cpu = time_sessions(
                [(label, session) for label, _, session in sessions], trial.feeds(), clocks[0], outputs, clocks[1]
            )
            # CPU time only says how long a call takes when the CPU does all of the work.
            busy = contended() if all(device.kind == "cpu" for _, (_, device), _ in sessions) else None
            clock, times = ("cpu", cpu) if busy else ("wall", wall)
        else:
            times = wall = cpu = {sessions[0][0]: float("nan")}
        disagree = _disagreeing(outputs, [label for label, _, _ in sessions], trial)
        order = rank(times, [label for label, _, _ in sessions if label not in disagree])
    except Exception:
        for _, _, session in sessions:
            session.close()
        raise
    winner = next(s for s in sessions if s[0] == order[0])
    for label, _, session in sessions:
        if label != order[0]:
            session.close()
    entries = [
        {
            "backend": b,
            "device": d,
            "ms": round(times[(b, d)] * 1e3, 3),
            "wall_ms": round(wall[(b, d)] * 1e3, 3),
            "cpu_ms": round(cpu[(b, d)] * 1e3, 3),
        }
        for b, d in order
    ]
    entries += [{"backend": b, "device": d, "error": why} for (b, d), why in disagree.items()] + failed
    described = trial.description + (f"; CPU time per call ({busy})" if busy else "")
    log.info("auto measured %s: %s", described, ", ".join(f"{e['backend']} {e.get('ms')} ms" for e in entries))
    return Ranking(entries, order[0][0], False, described, key, clock), winner[1], winner[2]


def _disagreeing(outputs: dict, labels: list, trial: Trial) -> dict:
    """label -> why, for engines whose trial pictures differ from the first (highest-priority) one's
    by more than AGREE levels."""
    import numpy as np

    if trial.pictures is None or len(outputs) < 2:
        return {}
    reference = labels[0]
    expected = trial.pictures(outputs[reference]).astype(np.int16)
    found = {}
    for label in labels[1:]:
        difference = int(np.abs(trial.pictures(outputs[label]).astype(np.int16) - expected).max())
        if difference > AGREE:
            found[label] = (
                f"its pictures differ from {reference[0]}'s by up to {difference} grey levels "
                f"(more than {AGREE}): not chosen"
            )
            log.warning("auto: %s on %s: %s", label[0], label[1], found[label])
    return found
