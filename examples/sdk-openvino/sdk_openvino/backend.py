"""The ``openvino`` backend: what it runs on, whether it can run here, and how a session starts."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk import Availability, Backend, BackendUnavailableError, InputError, RawRunner, Session

# The first release line with the ``openvino`` namespace API used here (Core, OVDict, share_outputs).
MIN_OPENVINO = (2024, 0)
PRECISIONS = ("f32", "bf16", "f16")
# The names the other backends use for the same precisions, and ones only other engines run.
ALIASES = {"fp32": "f32", "fp16": "f16"}
ELSEWHERE = ("int8",)
HINTS = ("LATENCY", "THROUGHPUT")
OPTIONS = ("precision", "threads", "performance_hint", "ov_config")


def import_openvino():
    """The openvino module, or BackendUnavailableError saying how to get a working one."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailableError(
            f"openvino is not installed ({exc}): pip install sdk-openvino (it depends on openvino)"
        ) from exc
    found = openvino_version(openvino)
    if found < MIN_OPENVINO:
        raise BackendUnavailableError(
            f"openvino {openvino.__version__} is too old: pip install 'openvino>={MIN_OPENVINO[0]}.{MIN_OPENVINO[1]}'"
        )
    return openvino


def openvino_version(openvino) -> tuple[int, int]:
    # "2026.4.1-22982-e213a147257-releases/2026/4" -> (2026, 4)
    text = getattr(openvino, "__version__", "") or openvino.get_version()
    parts = text.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return (0, 0)


@functools.lru_cache(maxsize=1)
def core():
    """One ov.Core per process: it owns the loaded device plugins, and every session can share it."""
    openvino = import_openvino()
    try:
        return openvino.Core()
    except Exception as exc:  # a broken install (missing shared library): report, never crash the host
        raise BackendUnavailableError(
            f"openvino {openvino.__version__} cannot start ({type(exc).__name__}: {exc}); "
            "reinstall it: pip install --force-reinstall openvino"
        ) from exc


def compile_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """Predictor options -> OpenVINO CPU properties; InputError for anything we do not understand.

    f32 is pinned because OpenVINO's CPU default is bf16 wherever the CPU has native bf16 (AVX-512
    BF16, AMX): faster, but it drifts from the other backends by more than the SDK's one-level
    tolerance. ``precision="bf16"`` opts into that trade.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"unknown openvino option(s) {unknown}; the openvino backend takes {list(OPTIONS)}")
    precision = options.get("precision", "f32")
    precision = ALIASES.get(precision, precision)
    if precision in ELSEWHERE:
        # Another engine's precision: unavailable here, so backend="auto" goes on to that engine.
        raise BackendUnavailableError(
            f"openvino does not run precision={precision!r} (ort-cpu does); it runs {PRECISIONS}"
        )
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r}: use one of {PRECISIONS} (f32 matches the other backends)")
    hint = str(options.get("performance_hint", "LATENCY")).upper()
    if hint not in HINTS:
        raise InputError(f"performance_hint={hint!r}: use 'LATENCY' (one image at a time) or 'THROUGHPUT'")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
    threads = options.get("threads")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InputError(f"threads={threads!r} must be a positive whole number, or left out to let OpenVINO choose")
        config["INFERENCE_NUM_THREADS"] = threads
    extra = options.get("ov_config") or {}
    if not isinstance(extra, Mapping):
        raise InputError(f"ov_config must be a dict of OpenVINO CPU properties, not {type(extra).__name__}")
    config.update(extra)
    return config


class OpenVinoBackend(Backend):
    """OpenVINO's CPU plugin. Priority 90, below ort-cpu (100): since deploy-sdk's graph optimisation
    pass, ort-cpu runs SRCNN faster on the CPUs we measured (see the README), so ``auto`` keeps it;
    ``backend="openvino"`` chooses this one."""

    name = "openvino"
    devices = ("cpu",)
    options = OPTIONS
    priority = 90

    def _probe(self, device) -> Availability:
        try:
            ov = import_openvino()
            engine = core()
        except BackendUnavailableError as exc:
            return Availability.no(str(exc))
        if "CPU" not in engine.available_devices:
            return Availability.no(
                f"openvino {ov.__version__} found no CPU plugin (devices: {engine.available_devices}); "
                "reinstall openvino: pip install --force-reinstall openvino"
            )
        return Availability.yes(
            openvino=ov.__version__.split("-")[0],
            cpu=engine.get_property("CPU", "FULL_DEVICE_NAME"),
            precision="f32",
        )

    def create_session(self, model, device, options: Mapping[str, Any]) -> Session:
        from .session import OpenVinoSession

        config = compile_config(options)  # bad options fail before anything heavy is imported
        return OpenVinoSession(core(), model, config)

    def raw_runner(self, model, device, options: Mapping[str, Any]) -> RawRunner:
        """One compiled model and infer request with the session's settings, called directly."""
        from .session import compile_model

        compiled = compile_model(core(), model, compile_config(options))
        request = compiled.create_infer_request()
        names = [info.name for info in model.outputs]

        def run(feeds):
            return request.infer(feeds, share_inputs=True, share_outputs=True)

        def outputs(result):
            return {name: np.array(result[name], copy=True) for name in names}

        return RawRunner(run, outputs, "bare OpenVINO infer request (compiled with the openvino backend's settings)")
