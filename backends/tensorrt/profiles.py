"""Optimisation profiles: the shape ranges an engine accepts, per input.

A TensorRT engine only runs shapes inside the profile it was built with, and its device memory is
sized for the profile's maximum. Profiles come from two places:

* ``profile={"input": [min, opt, max]}`` given by the user: kept exactly; a feed outside it is an
  InputError that says how to widen it (rebuilding behind the user's back would ignore their choice).
* derived (every input the user did not name): static dimensions are fixed; a dynamic dimension runs
  from 1 to the first value seen rounded up to a power of two (at least 64 for image dimensions),
  tuned for that maximum. A later feed outside it widens the range the same way and the engine is
  rebuilt once (and cached), so a folder of images of mixed sizes costs a few builds, not one each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sdk.backend import TensorInfo
from sdk.errors import InputError

# Below this, a derived image dimension is rounded up: small tiles and thumbnails share one engine.
MIN_IMAGE_EXTENT = 64


@dataclass(frozen=True)
class ShapeRange:
    """min <= opt <= max, dimension by dimension."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self):
        if not len(self.min) == len(self.opt) == len(self.max):
            raise InputError(f"profile shapes {list(self.min)}, {list(self.opt)}, {list(self.max)} differ in rank")
        for low, mid, high in zip(self.min, self.opt, self.max):
            if not 1 <= low <= mid <= high:
                raise InputError(
                    f"profile min {list(self.min)}, opt {list(self.opt)}, max {list(self.max)} must be "
                    "positive with min <= opt <= max in every dimension"
                )

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))

    def as_lists(self) -> list[list[int]]:
        return [list(self.min), list(self.opt), list(self.max)]


@dataclass(frozen=True)
class Profile:
    """One shape range per engine input, and which of them the user fixed."""

    ranges: tuple[tuple[str, ShapeRange], ...]
    fixed: frozenset[str] = frozenset()

    def __getitem__(self, name: str) -> ShapeRange:
        return dict(self.ranges)[name]

    def canonical(self) -> str:
        """A stable text form, for the engine cache key."""
        return json.dumps({name: r.as_lists() for name, r in self.ranges}, sort_keys=True, separators=(",", ":"))

    def outside(self, shapes: Mapping[str, Sequence[int]]) -> list[str]:
        """Names of the inputs whose shape the profile does not cover."""
        return [name for name, r in self.ranges if name in shapes and not r.contains(shapes[name])]


def parse_option(option, inputs: Sequence[TensorInfo]) -> dict[str, ShapeRange]:
    """``profile={"input": [min, opt, max]}`` -> checked ShapeRanges, or an InputError saying what to pass."""
    if option is None:
        return {}
    if not isinstance(option, Mapping):
        raise InputError(
            f"profile must be a dict of input name -> [min, opt, max] shapes, e.g. "
            f"{{'input': [(1, 3, 16, 16), (1, 3, 256, 256), (4, 3, 1024, 1024)]}}; got {option!r}"
        )
    by_name = {info.name: info for info in inputs}
    ranges = {}
    for name, shapes in option.items():
        if name not in by_name:
            raise InputError(f"profile names input {name!r}, but the engine's inputs are {sorted(by_name)}")
        info = by_name[name]
        try:
            low, mid, high = (tuple(int(d) for d in shape) for shape in shapes)
        except (TypeError, ValueError):
            raise InputError(f"profile[{name!r}] must be three shapes [min, opt, max], got {shapes!r}") from None
        shape_range = ShapeRange(low, mid, high)
        if len(low) != len(info.shape):
            raise InputError(f"profile[{name!r}] has rank {len(low)}; input {name!r} has shape {_shown(info.shape)}")
        for axis, want in enumerate(info.shape):
            if isinstance(want, int) and not low[axis] == mid[axis] == high[axis] == want:
                raise InputError(
                    f"profile[{name!r}]: dimension {axis} of {name!r} is fixed at {want} by the model; "
                    f"use {want} in min, opt and max"
                )
        ranges[name] = shape_range
    return ranges


def derive(
    inputs: Iterable[TensorInfo],
    shapes: Mapping[str, Sequence[int]],
    given: Mapping[str, ShapeRange] | None = None,
    previous: Profile | None = None,
) -> Profile:
    """The profile for an engine that must run ``shapes``.

    ``given`` ranges are used as they are; every other input gets a derived range that covers both
    ``shapes`` and, when widening, the ``previous`` profile's range.
    """
    given = dict(given or {})
    ranges = []
    for info in inputs:
        if info.name in given:
            ranges.append((info.name, given[info.name]))
            continue
        if info.name not in shapes:
            raise InputError(f"no feed for input {info.name!r}: the engine needs it to choose its shapes")
        shape = tuple(int(d) for d in shapes[info.name])
        if len(shape) != len(info.shape):
            raise InputError(f"feed {info.name!r} has shape {list(shape)}; the model wants {_shown(info.shape)}")
        old = dict(previous.ranges).get(info.name) if previous else None
        low, high = [], []
        for axis, (want, got) in enumerate(zip(info.shape, shape)):
            if isinstance(want, int):
                low.append(want)
                high.append(want)
                continue
            top = bucket(got, 1 if axis == 0 else MIN_IMAGE_EXTENT)
            if old is not None:
                top = max(top, old.max[axis])
            low.append(1)
            high.append(top)
        # opt = max: TensorRT tunes its kernels for opt, and the big shapes are the slow ones.
        ranges.append((info.name, ShapeRange(tuple(low), tuple(high), tuple(high))))
    return Profile(tuple(ranges), frozenset(given))


def bucket(value: int, floor: int) -> int:
    """The smallest power of two >= value, and at least ``floor``."""
    return max(floor, 1 << max(0, int(value) - 1).bit_length())


def describe_miss(profile: Profile, name: str, shape: Sequence[int]) -> str:
    r = profile[name]
    return (
        f"input {name!r} has shape {list(shape)}, outside the TensorRT profile you gave "
        f"(min {list(r.min)}, max {list(r.max)}); widen profile={{'{name}': [min, opt, max]}}, "
        "or pass tile=N so that every tile fits"
    )


def _shown(shape) -> list:
    return [d if isinstance(d, int) else "?" for d in shape]
