"""Property tests of the server's inputs: whatever a client puts in the /v1 query, a /v2 JSON body or a
/v2 binary body, the answer is never a 500 (every bad value is a 4xx), it is valid JSON when it is an
error, and the server still answers its health check afterwards. Bounded so the suite stays fast."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[dev]'")
pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("starlette", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from serving import encode, picture  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BOUNDED = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
UPSCALE, INFER = "/v1/models/srcnn3/upscale", "/v2/models/srcnn3/infer"
PNG = encode(picture(6, 5))


@pytest.fixture(scope="module")
def client():
    from starlette.testclient import TestClient

    from sdk import Predictor
    from sdk.serve import create_app

    with Predictor("srcnn3", backend="ort-cpu") as predictor:
        # Small limits: the fuzz must stay cheap whatever it finds that runs.
        app = create_app(predictor, max_pixels=64 * 64, max_elements=4096, max_json_bytes=65536, max_images=4)
        with TestClient(app, raise_server_exceptions=True) as c:
            yield c


def check(client, response) -> None:
    assert response.status_code != 500, response.text
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)  # valid JSON, with the sdk message
    assert response.headers["x-request-id"]


SCALES = st.one_of(
    st.sampled_from(
        ["2", "3", "0", "-1", "nan", "inf", "-inf", "1e3", "2.0", "2.5", "0x2", "", " 2 ", "２", "9" * 400]
    ),
    st.text(max_size=12),
)
QUERY = st.dictionaries(
    st.sampled_from(["scale", "format", "x", "scale[]"]),
    st.one_of(SCALES, st.sampled_from(["png", "jpeg", "JPG", "webp", "gif", "../etc/passwd"])),
    max_size=3,
)


@BOUNDED
@given(query=QUERY, body=st.one_of(st.just(PNG), st.binary(max_size=64), st.just(PNG[:40])))
def test_v1_query_and_body_never_give_500(client, query, body):
    check(client, client.post(UPSCALE, params=query, content=body))


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
SHAPES = st.one_of(st.lists(st.integers(-1, 6), max_size=5), JSON)
NAMES = st.one_of(st.sampled_from(["input", "factor", "image", ""]), JSON)
DATATYPES = st.one_of(st.sampled_from(["FP32", "FP16", "INT64", "BYTES", "BOOL", "UINT8", "FP99"]), JSON)


@st.composite
def v2_documents(draw):
    def maybe(strategy, plausible):
        return draw(st.one_of(st.just(plausible), strategy))

    inputs = []
    for _ in range(draw(st.integers(0, 3))):
        name = maybe(NAMES, "input")
        shape = maybe(SHAPES, [1, 3, 2, 2])
        data = maybe(JSON, [0.5] * 12)
        item = {"name": name, "shape": shape, "datatype": maybe(DATATYPES, "FP32"), "data": data}
        if draw(st.booleans()):
            item["parameters"] = maybe(JSON, {"content_type": "base64"})
        inputs.append(item)
    doc = {"inputs": inputs}
    for key, plausible in (("parameters", {"scale": 2}), ("outputs", [{"name": "output"}]), ("id", "a")):
        if draw(st.booleans()):
            doc[key] = maybe(JSON, plausible)
    return doc


@BOUNDED
@given(doc=v2_documents())
def test_v2_json_bodies_never_give_500(client, doc):
    check(client, client.post(INFER, content=json.dumps(doc).encode()))


@BOUNDED
@given(
    factor=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=6),
    size=st.integers(0, 5),
    tail=st.binary(max_size=8),
    header_shift=st.integers(-3, 3),
    binary_output=st.booleans(),
)
def test_v2_binary_bodies_never_give_500(client, factor, size, tail, header_shift, binary_output):
    image = np.full((1, 3, size, size), 100, "<f4").tobytes()
    raw_factor = np.asarray(factor, "<f4").tobytes()
    doc = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 3, size, size],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(image)},
            },
            {
                "name": "factor",
                "shape": [len(factor)],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw_factor)},
            },
        ],
        "parameters": {"binary_data_output": binary_output},
    }
    head = json.dumps(doc).encode()
    body = head + image + raw_factor + tail
    headers = {"inference-header-content-length": str(len(head) + header_shift)}
    check(client, client.post(INFER, content=body, headers=headers))


@BOUNDED
@given(
    blobs=st.lists(st.one_of(st.just(PNG), st.binary(max_size=32)), max_size=6),
    lengths=st.lists(st.integers(0, 2**32 - 1), max_size=3),
)
def test_v2_binary_images_never_give_500(client, blobs, lengths):
    data = b"".join(struct.pack("<I", len(b)) + b for b in blobs) + b"".join(struct.pack("<I", n) for n in lengths)
    doc = {
        "parameters": {"scale": 2},
        "inputs": [
            {"name": "image", "shape": [len(blobs)], "datatype": "BYTES", "parameters": {"binary_data_size": len(data)}}
        ],
    }
    head = json.dumps(doc).encode()
    check(client, client.post(INFER, content=head + data, headers={"inference-header-content-length": str(len(head))}))


def test_the_server_is_alive_after_the_fuzz(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.post(UPSCALE, params={"scale": 2}, content=PNG).status_code == 200
