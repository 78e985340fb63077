"""Optimisation profiles of the TensorRT backend: derived from the model and the first feeds,
widened for bigger inputs, or given by the user and then never silently changed."""

from __future__ import annotations

import numpy as np
import pytest

from deploy_sdk_backends.tensorrt import profiles
from deploy_sdk_backends.tensorrt.profiles import Profile, ShapeRange
from sdk.backend import TensorInfo
from sdk.errors import InputError

F32 = np.dtype("float32")
DYNAMIC = TensorInfo("input", ("n", 3, "h", "w"), F32)
STATIC = TensorInfo("input", (1, 3, 32, 48), F32)


def test_bucket_rounds_up_to_a_power_of_two_with_a_floor():
    assert [profiles.bucket(v, 1) for v in (1, 2, 3, 4, 5, 255, 256, 257)] == [1, 2, 4, 4, 8, 256, 256, 512]
    assert profiles.bucket(40, 64) == 64 and profiles.bucket(100, 64) == 128


def test_static_dimensions_are_fixed():
    profile = profiles.derive([STATIC], {"input": (1, 3, 32, 48)})
    assert profile["input"] == ShapeRange((1, 3, 32, 48), (1, 3, 32, 48), (1, 3, 32, 48))


def test_dynamic_dimensions_run_from_one_to_the_first_feed_rounded_up():
    profile = profiles.derive([DYNAMIC], {"input": (1, 3, 40, 300)})
    r = profile["input"]
    assert r.min == (1, 3, 1, 1)
    assert r.max == r.opt == (1, 3, 64, 512)  # image extents at least 64; batch from 1
    assert r.contains((1, 3, 40, 300)) and r.contains((1, 3, 1, 1))
    assert not r.contains((2, 3, 40, 300)) and not r.contains((1, 3, 65, 10))


def test_similar_first_feeds_give_the_same_profile_so_the_cached_engine_is_shared():
    a = profiles.derive([DYNAMIC], {"input": (1, 3, 200, 250)})
    b = profiles.derive([DYNAMIC], {"input": (1, 3, 129, 256)})
    assert a.canonical() == b.canonical()


def test_widening_covers_both_the_old_range_and_the_new_shape():
    first = profiles.derive([DYNAMIC], {"input": (1, 3, 500, 60)})
    assert first.outside({"input": (2, 3, 100, 100)}) == ["input"]
    wider = profiles.derive([DYNAMIC], {"input": (2, 3, 100, 100)}, previous=first)
    assert wider["input"].max == (2, 3, 512, 128)
    assert wider.outside({"input": (1, 3, 500, 60)}) == [] and wider.outside({"input": (2, 3, 100, 100)}) == []


def test_a_given_range_is_kept_as_given_and_marked_fixed():
    given = profiles.parse_option({"input": [(1, 3, 16, 16), (1, 3, 256, 256), (4, 3, 1024, 1024)]}, [DYNAMIC])
    profile = profiles.derive([DYNAMIC], {"input": (1, 3, 8, 8)}, given)
    assert profile["input"] == ShapeRange((1, 3, 16, 16), (1, 3, 256, 256), (4, 3, 1024, 1024))
    assert profile.fixed == {"input"}
    assert profile.outside({"input": (1, 3, 8, 8)}) == ["input"]
    message = profiles.describe_miss(profile, "input", (1, 3, 8, 8))
    assert "outside the TensorRT profile you gave" in message and "profile=" in message and "tile=" in message


def test_canonical_text_is_stable_and_names_every_range():
    profile = profiles.derive([DYNAMIC], {"input": (1, 3, 10, 10)})
    assert profile.canonical() == '{"input":[[1,3,1,1],[1,3,64,64],[1,3,64,64]]}'


@pytest.mark.parametrize(
    "option, message",
    [
        ("input", "must be a dict"),
        ({"image": [(1, 3, 1, 1)] * 3}, "engine's inputs are"),
        ({"input": [(1, 3, 1, 1), (1, 3, 8, 8)]}, "three shapes"),
        ({"input": [(1, 3, 1), (1, 3, 8), (1, 3, 9)]}, "rank 3"),
        ({"input": [(1, 1, 1, 1), (1, 1, 8, 8), (1, 1, 9, 9)]}, "fixed at 3"),
        ({"input": [(1, 3, 9, 9), (1, 3, 8, 8), (1, 3, 10, 10)]}, "min <= opt <= max"),
        ({"input": [(0, 3, 1, 1), (1, 3, 8, 8), (1, 3, 10, 10)]}, "positive"),
    ],
)
def test_bad_profile_options_name_the_fix(option, message):
    with pytest.raises(InputError, match=message):
        profiles.parse_option(option, [DYNAMIC])


def test_no_option_means_every_range_is_derived():
    assert profiles.parse_option(None, [DYNAMIC]) == {}
    profile = profiles.derive([DYNAMIC], {"input": (1, 3, 10, 10)}, {})
    assert profile.fixed == frozenset() and isinstance(profile, Profile)


def test_a_missing_feed_or_wrong_rank_is_an_input_error():
    with pytest.raises(InputError, match="no feed"):
        profiles.derive([DYNAMIC], {})
    with pytest.raises(InputError, match="shape"):
        profiles.derive([DYNAMIC], {"input": (3, 10, 10)})
