"""Building a serialized engine from an ONNX file, as a chain of small steps (Polygraphy's idea):

    network, parser = parse_onnx(trt, builder, path, ...)        ONNX file -> network
    config = make_config(trt, builder, network, profile, ...)    -> config with the profile
    keep = attach_timing_cache(config, timing)                   -> and the timing cache read from disk
    engine = build_engine(builder, network, config, ...)         -> engine bytes

Each step does one thing and raises an SDK error that names the fix. Written against the TensorRT
10 and 11 Python API: tensor names, ``build_serialized_network``, no implicit batch. TensorRT 11 has
no FP16 builder flag (every network is strongly typed), so there fp16 arrives already in the graph
(see graph.to_fp16); on TensorRT 10 the FP16 flag lets the builder choose fp16 kernels.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sdk.errors import BackendUnavailableError, ModelError, SDKError

from .profiles import Profile

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
MIN_MAJOR = 10
INSTALL = "pip install 'deploy-sdk[trt]'"


@dataclass(frozen=True)
class BuildSettings:
    """Builder choices that change the engine (so they are part of the cache key)."""

    precision: str = "fp32"
    workspace: int | None = None  # bytes of scratch memory the builder may give a layer
    optimization_level: int | None = None  # TensorRT's builder_optimization_level, 0..5

    def key_items(self) -> tuple[tuple[str, str], ...]:
        return (("workspace", str(self.workspace)), ("optimization_level", str(self.optimization_level)))


# -- the library -----------------------------------------------------------------------------------


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"TensorRT is not installed ({exc}): {INSTALL} (its libraries come from NVIDIA's package "
            "index, pypi.nvidia.com, which must be reachable)"
        ) from exc
    except Exception as exc:  # a half-installed wheel fails while loading libnvinfer
        raise BackendUnavailableError(
            f"TensorRT is installed but does not load ({type(exc).__name__}: {exc}): reinstall it with {INSTALL}"
        ) from exc
    return tensorrt


def version_of(trt) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", getattr(trt, "__version__", ""))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def minimum_compute_capability(version: tuple[int, int]) -> tuple[int, int]:
    """The oldest GPU a TensorRT release runs on: Volta (7.0) was removed in 10.5."""
    return (7, 0) if version < (10, 5) else (7, 5)


def fp16_in_graph(trt, precision: str) -> bool:
    """Whether fp16 must be put into the ONNX graph (TensorRT 11+) instead of asked of the builder."""
    return precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16")


@functools.cache
def logger_for(trt):
    """One logger per process (TensorRT keeps a global one), forwarding to Python logging."""
    severity = trt.ILogger.Severity
    levels = {
        severity.INTERNAL_ERROR: logging.CRITICAL,
        severity.ERROR: logging.ERROR,
        severity.WARNING: logging.WARNING,
        severity.INFO: logging.DEBUG,
        severity.VERBOSE: logging.DEBUG,
    }
    library_log = logging.getLogger("deploy_sdk_backends.tensorrt.library")

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, level, message):
            python_level = levels.get(level, logging.INFO)
            if library_log.isEnabledFor(python_level):  # VERBOSE builds log thousands of lines
                library_log.log(python_level, "%s", message)

    return Logger()


# -- step 1: ONNX file -> network ---------------------------------------------------------------------


def parse_onnx(trt, builder, path: Path, nodes: Sequence[tuple[str, str]], strongly_typed: bool):
    """Parse ``path`` from the file (so external weights next to it resolve) into a new network.

    ``nodes`` are (name, op_type) of the graph's nodes, to name the node of an error when the
    TensorRT build does not. The parser is returned too: it owns weights the network points at.
    """
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger_for(trt))
    if not parser.parse_from_file(str(path)):
        problems = [describe_parser_error(parser.get_error(i), nodes) for i in range(parser.num_errors)]
        raise ModelError(
            "TensorRT cannot parse the model: "
            + "; ".join(problems or ["no detail given"])
            + ". Use backend='ort-cuda' for this model, or export it with operators TensorRT supports"
        )
    return network, parser


def describe_parser_error(error, nodes: Sequence[tuple[str, str]]) -> str:
    """'node 3 "up" (Resize): <what TensorRT said>' from one IParserError."""
    text = str(error.desc()).strip()
    index = int(error.node()) if hasattr(error, "node") else -1
    name = _call(error, "node_name") or (nodes[index][0] if 0 <= index < len(nodes) else "")
    op = _call(error, "node_operator") or (nodes[index][1] if 0 <= index < len(nodes) else "")
    if index < 0 and not name:
        return text
    where = f"node {index}" if index >= 0 else "node"
    if name:
        where += f" {name!r}"
    if op:
        where += f" ({op})"
    return f"{where}: {text}"


def _call(obj, method: str) -> str:
    try:
        return str(getattr(obj, method)() or "")
    except Exception:  # absent before TensorRT 10, or no node attached to this error
        return ""


# -- step 2: network -> builder config -----------------------------------------------------------------


def make_config(trt, builder, network, profile: Profile, settings: BuildSettings, monitor=None):
    """The builder config: one optimisation profile, precision, memory limit, progress.

    ``monitor`` is a trt.IProgressMonitor; the caller keeps it alive until the build is over.
    """
    config = builder.create_builder_config()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    ranges = dict(profile.ranges)
    missing = [name for name in names if name not in ranges]
    if missing:
        raise SDKError(
            f"no optimisation profile for the network inputs {missing}; pass profile={{name: [min, opt, max]}}"
        )
    optimisation_profile = builder.create_optimization_profile()
    for name in names:
        r = ranges[name]
        optimisation_profile.set_shape(name, r.min, r.opt, r.max)
    config.add_optimization_profile(optimisation_profile)

    if settings.precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10: the builder may pick fp16 kernels
    if settings.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TF32 is on by default and rounds convolution inputs to 10 mantissa bits: not what fp32 promises.
        config.clear_flag(trt.BuilderFlag.TF32)
    if settings.workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace))
    if settings.optimization_level is not None:
        config.builder_optimization_level = int(settings.optimization_level)

    if monitor is not None:
        config.progress_monitor = monitor
    return config


def attach_timing_cache(config, timing: bytes) -> bool:
    """Give the build the timing cache read from disk (or a new one); True when the cache the build
    ends with may be written back.

    False when TensorRT refused to take any cache: the build then times its kernels afresh, and
    what the config holds afterwards is not the file's cache plus this build's, so writing it back
    would throw the file's entries away.
    """
    cache = None
    if timing:
        try:
            cache = config.create_timing_cache(timing)
        except Exception as exc:  # written by another build of TensorRT, or damaged: start afresh
            log.warning("ignoring the TensorRT timing cache (%s); a new one is written after this build", exc)
    if cache is None:
        cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, ignore_mismatch=True):
        log.warning("TensorRT did not take the timing cache; this build times its kernels afresh, the file stays")
        return False
    return True


# -- step 3: config -> engine bytes ---------------------------------------------------------------------


def build_engine(builder, network, config, what: str) -> bytes:
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SDKError(
            f"TensorRT could not build the engine for {what}; its log above says why. Most often the "
            "profile's largest shape needs more GPU memory than there is: pass a smaller profile= or tile=N"
        )
    log.info("built the TensorRT engine for %s in %.0f s", what, time.monotonic() - started)
    return bytes(serialized)


def timing_cache_bytes(config) -> bytes:
    """The config's timing cache serialised; b"" (nothing to write) when it has none."""
    cache = config.get_timing_cache()
    serialized = cache.serialize() if cache is not None else None
    return bytes(serialized) if serialized is not None else b""


# -- build progress: builds take minutes, so say what is happening ------------------------------------


class BuildProgress:
    """Turns TensorRT's phase/step events into one status line per top-level phase."""

    def __init__(self, what: str, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self._started = clock()
        self._phases: dict[str, tuple[str | None, int]] = {}

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        self._phases[phase] = (parent, int(steps))
        if parent is None:
            self._write(f"{phase} ...")

    def step_complete(self, phase: str, step: int) -> bool:
        parent, steps = self._phases.get(phase, (None, 0))
        if parent is None and steps > 1:
            self._write(f"{phase} {int(step) + 1}/{steps}")
        return True  # False would cancel the build

    def phase_finish(self, phase: str) -> None:
        parent, _ = self._phases.pop(phase, (None, 0))
        if parent is None:
            self._write(f"{phase} done")

    def _write(self, text: str) -> None:
        elapsed = self.clock() - self._started
        print(f"[TensorRT {elapsed:5.0f} s] building {self.what}: {text}", file=self.stream, flush=True)


def progress_monitor(trt, progress: BuildProgress):
    """A trt.IProgressMonitor (TensorRT 10+) that forwards to ``progress``."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name):
            progress.phase_finish(phase_name)

    return Monitor()


# -- the chain ---------------------------------------------------------------------------------------


def build(
    trt,
    onnx_path: Path,
    nodes: Sequence[tuple[str, str]],
    profile: Profile,
    settings: BuildSettings,
    timing: bytes,
    what: str,
    progress: BuildProgress | None = None,
) -> tuple[bytes, bytes]:
    """ONNX file -> (serialized engine, updated timing cache; b"" when the file must stay as it is)."""
    builder = trt.Builder(logger_for(trt))
    network, parser = parse_onnx(trt, builder, onnx_path, nodes, strongly_typed=fp16_in_graph(trt, settings.precision))
    monitor = progress_monitor(trt, progress) if progress is not None and hasattr(trt, "IProgressMonitor") else None
    config = make_config(trt, builder, network, profile, settings, monitor)
    keep = attach_timing_cache(config, timing)
    engine = build_engine(builder, network, config, what)
    # Referenced until here on purpose: the network points into the parser's weights, and TensorRT
    # calls the monitor from inside build_engine.
    del parser, monitor
    return engine, timing_cache_bytes(config) if keep else b""
