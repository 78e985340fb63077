"""Property tests: whatever image, scale, colour order or tile size comes in, the result has exactly
the expected shape or the SDK raises one of its own errors; whatever bytes a model file holds, it
loads or raises ModelError. Bounded (examples, no deadline) so the suite stays fast on two cores."""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[dev]'")
import graphs  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sdk  # noqa: E402

BOUNDED = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def predictor(runtime_model):
    return sdk.Predictor(runtime_model, backend="ort-cpu")


DTYPES = [np.uint8, np.uint16, np.float32, np.int64, np.bool_]
CHANNELS = [None, 1, 2, 3, 4, 5]


def _valid(dtype, channels, height, width, scale, color, tile) -> bool:
    scale_ok = scale is not None and not isinstance(scale, bool) and float(scale) == int(scale) and scale >= 1
    tile_ok = tile == "auto" or (isinstance(tile, int) and tile >= 0)
    return (
        dtype in (np.uint8, np.uint16)
        and channels in (None, 1, 3, 4)
        and height > 0
        and width > 0
        and scale_ok
        and color in ("rgb", "bgr")
        and tile_ok
    )


@BOUNDED
@given(
    height=st.integers(0, 600),
    width=st.integers(0, 600),
    channels=st.sampled_from(CHANNELS),
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from([1, 2, 3, 2.0, 0, -1, 2.5, None, True]),
    color=st.sampled_from(["rgb", "bgr", "RGB", "yuv"]),
    tile=st.sampled_from(["auto", 0, 16, 100, -1, 1.5, "big"]),
)
def test_images_give_the_expected_shape_or_an_sdk_error(predictor, height, width, channels, dtype, scale, color, tile):
    shape = (height, width) if channels is None else (height, width, channels)
    image = np.zeros(shape, dtype=dtype)
    if height and width:
        image.flat[::7] = 1  # not all zeros, cheaply
    try:
        out = predictor(image, scale=scale, color=color, tile=tile)
    except sdk.SDKError:
        assert not _valid(dtype, channels, height, width, scale, color, tile)
        return
    assert _valid(dtype, channels, height, width, scale, color, tile)
    s = int(scale)
    assert out.shape == (height * s, width * s, 3) and out.dtype == dtype


def _mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(buf) - 1))
            buf[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del buf[draw(st.integers(0, len(buf) - 1)) :]
    elif kind == "insert":
        at = draw(st.integers(0, len(buf)))
        buf[at:at] = draw(st.binary(min_size=1, max_size=16))
    else:
        a, b = sorted(draw(st.integers(0, len(buf))) for _ in range(2))
        buf[a:b] = draw(st.binary(max_size=b - a + 4))
    return bytes(buf)


@pytest.fixture(scope="module")
def model_bytes():
    return graphs.runtime_scale_model().SerializeToString()


@BOUNDED
@given(data=st.data())
def test_mutated_models_load_or_raise_model_error(model_bytes, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "mutated.onnx"
    path.write_bytes(_mutate(model_bytes, data.draw))
    try:
        predictor = sdk.Predictor(path, backend="ort-cpu")
    except sdk.ModelError:
        return
    # It loaded: it must then upscale, or refuse with an SDK error (e.g. a weight now the wrong size).
    try:
        out = predictor(np.full((5, 6, 3), 100, np.uint8), scale=2)
    except sdk.SDKError:
        return
    assert out.shape == (10, 12, 3)
