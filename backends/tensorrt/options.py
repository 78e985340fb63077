"""The options ``Predictor(..., backend="trt", **options)`` accepts, checked before anything is built."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdk.errors import InputError

from .build import PRECISIONS, BuildSettings

HELP = {
    "precision": "'fp32' (default) or 'fp16'",
    "profile": "{input name: [min, opt, max] shapes}; inputs left out get shapes derived from the first feeds",
    "cache_dir": "folder for engines (default: $SDK_CACHE_DIR/tensorrt, else the user cache folder)",
    "max_engines": "engines kept loaded at once, one per scale factor (default 4)",
    "workspace": "bytes of GPU scratch memory a layer may use while building (default: TensorRT's)",
    "optimization_level": "TensorRT builder optimisation level 0..5 (default: TensorRT's, 3)",
    "progress": "print build progress to stderr (default: when stderr is a terminal)",
    "lock_timeout": "seconds to wait for another process building the same engine (default 3600)",
}


@dataclass(frozen=True)
class TrtOptions:
    precision: str = "fp32"
    profile: Mapping | None = None
    cache_dir: Path | None = None
    max_engines: int = 4
    workspace: int | None = None
    optimization_level: int | None = None
    progress: bool = False
    lock_timeout: float = 3600.0

    @property
    def settings(self) -> BuildSettings:
        return BuildSettings(self.precision, self.workspace, self.optimization_level)

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> TrtOptions:
        unknown = sorted(set(options) - set(HELP))
        if unknown:
            listing = "; ".join(f"{name}: {text}" for name, text in HELP.items())
            raise InputError(f"unknown TensorRT option(s) {unknown}; the trt backend takes {listing}")
        precision = str(options.get("precision", "fp32")).lower()
        if precision not in PRECISIONS:
            raise InputError(f"precision={options['precision']!r}: use one of {', '.join(PRECISIONS)}")
        cache_dir = options.get("cache_dir")
        progress = options.get("progress")
        return cls(
            precision=precision,
            profile=options.get("profile"),
            cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else None,
            max_engines=_positive_int(options, "max_engines", 4),
            workspace=_positive_int(options, "workspace", None),
            optimization_level=_level(options.get("optimization_level")),
            progress=sys.stderr.isatty() if progress is None else bool(progress),
            lock_timeout=_seconds(options.get("lock_timeout", 3600.0)),
        )


def _positive_int(options: Mapping, name: str, default):
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}={value!r} must be a positive integer ({HELP[name]})")
    return value


def _seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InputError(f"lock_timeout={value!r} must be a number of seconds, 0 or more")
    return float(value)


def _level(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
        raise InputError(f"optimization_level={value!r} must be an integer from 0 to 5")
    return value
