"""Hostile values, in-process: every bad scale, factor, JSON body and tensor is a 4xx with an sdk
message that leaks nothing, decided before any engine call, in well under a second each."""

from __future__ import annotations

import json
import logging
import struct
import time

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("starlette", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from serving import encode, picture

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

UPSCALE, INFER = "/v1/models/srcnn3/upscale", "/v2/models/srcnn3/infer"


@pytest.fixture(scope="module")
def predictor():
    from sdk import Predictor

    with Predictor("srcnn3", backend="ort-cpu") as p:
        yield p


def client_for(predictor, **settings):
    from starlette.testclient import TestClient

    from sdk.serve import create_app

    return TestClient(create_app(predictor, **settings))


@pytest.fixture(scope="module")
def client(predictor):
    with client_for(predictor, tile=64, max_pixels=512 * 512, max_images=4, max_elements=100_000) as c:
        yield c


def refused(response, status: int, *words: str) -> str:
    """The answer is ``status`` with a JSON {"error": ...} naming ``words``, a request id, no internals."""
    assert response.status_code == status, (response.status_code, response.text)
    message = response.json()["error"]
    for word in words:
        assert word in message, (word, message)
    for leak in ("Traceback", "/", "onnxruntime", "ORT", ".onnx", 'File "'):
        assert leak not in message.replace("/v2/models/NAME", ""), (leak, message)
    assert response.headers["x-request-id"]
    return message


def raw(inputs: dict[str, np.ndarray], binary_output: bool = True) -> tuple[bytes, dict]:
    entries, blobs = [], []
    for name, array in inputs.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        entries.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(data)},
            }
        )
        blobs.append(data)
    head = json.dumps({"inputs": entries, "parameters": {"binary_data_output": binary_output}}).encode()
    return head + b"".join(blobs), {"inference-header-content-length": str(len(head))}


def image_request(blobs: list[bytes], **parameters) -> tuple[bytes, dict]:
    data = b"".join(struct.pack("<I", len(b)) + b for b in blobs)
    doc = {
        "parameters": parameters,
        "inputs": [
            {"name": "image", "shape": [len(blobs)], "datatype": "BYTES", "parameters": {"binary_data_size": len(data)}}
        ],
    }
    head = json.dumps(doc).encode()
    return head + data, {"inference-header-content-length": str(len(head))}


@pytest.mark.parametrize(
    "scale, words",
    [
        ("nan", ["whole number"]),
        ("inf", ["whole number"]),
        ("-inf", ["whole number"]),
        ("1e3", ["whole number"]),
        ("2.5", ["whole number"]),
        ("0x10", ["whole number"]),
        ("0", ["positive"]),
        ("-1", ["whole number"]),
        ("1600", ["--max-scale 8"]),
        ("9", ["--max-scale 8"]),
        ("9" * 5000, ["whole number"]),
    ],
)
def test_v1_bad_scales_are_422_before_any_work(client, predictor, monkeypatch, scale, words):
    calls = []
    monkeypatch.setattr(predictor.pipeline, "run_tensor", lambda *a: calls.append(a))
    started = time.perf_counter()
    refused(client.post(UPSCALE, params={"scale": scale}, content=encode(picture(1, 1))), 422, *words)
    assert time.perf_counter() - started < 1.0 and not calls


def test_the_result_is_bounded_by_max_pixels_from_the_header(client):
    # 300x300 fits --max-pixels 512x512 as input, not its x2 result: refused before decoding.
    refused(client.post(UPSCALE, params={"scale": 2}, content=encode(picture(300, 300))), 413, "--max-pixels")
    assert client.post(UPSCALE, params={"scale": 2}, content=encode(picture(200, 200))).status_code == 200


def test_a_result_larger_than_free_memory_is_413_from_the_plan(client, monkeypatch):
    from sdk import memory

    monkeypatch.setattr(memory, "available", lambda: 10_000)  # what Predictor.plan reads
    refused(client.post(UPSCALE, params={"scale": 2}, content=encode(picture(64, 64))), 413, "memory")


@pytest.mark.parametrize(
    "parameters, status, words",
    [
        ('{"scale": NaN}', 400, ["not JSON"]),
        ('{"scale": Infinity}', 400, ["not JSON"]),
        ('{"scale": 1e999}', 400, ["not JSON"]),
        ('{"scale": 100000}', 422, ["--max-scale"]),
        ('{"scale": 2.5}', 422, ["whole number"]),
        ('{"scale": [2]}', 422, ["whole number"]),
        ('{"scale": "2"}', 200, []),
    ],
)
def test_v2_image_scales(client, parameters, status, words):
    blob = encode(picture(8, 8))
    data = struct.pack("<I", len(blob)) + blob
    image = {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(data)}}
    head = f'{{"parameters": {parameters}, "inputs": [{json.dumps(image)}]}}'.encode()
    response = client.post(INFER, content=head + data, headers={"inference-header-content-length": str(len(head))})
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        refused(response, status, *words)


def test_json_nested_deep_is_400_at_once(client):
    started = time.perf_counter()
    refused(client.post(INFER, content=b"[" * 100_000 + b"]" * 100_000), 400, "nested too deep")
    deep = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [[[["x"]]]] * 1}]}
    cell = deep["inputs"][0]
    for _ in range(200):
        cell["data"] = [cell["data"]]
    refused(client.post(INFER, json=deep), 400, "nested")
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    "text, depth",
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [[1, 2], {"b": []}]}', 4),
        (b'["[[[[", "]]"]', 1),  # brackets inside strings do not count
        (b'["\\\\"]', 1),  # an escaped backslash ends its run: the next quote closes the string
        (b'["a\\\\\\"[[[", 1]', 1),  # \\\" is a backslash and a quote, both inside the string
        (b'["\\\\", [[1]]]', 3),
        (b'[[["\\u005b"]]]', 3),
        (b"[" * 100_000, 100_000),
    ],
)
def test_json_depth_is_counted_on_the_bytes(text, depth):
    from sdk.serve.nesting import json_depth

    assert json_depth(text) == depth


def test_json_depth_agrees_with_the_document_for_any_json():
    pytest.importorskip("hypothesis", reason="the property test needs hypothesis: pip install -e '.[dev]'")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sdk.serve.nesting import json_depth

    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet='[]{}"\\ab\n', max_size=8))
    documents = st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    )

    def depth(value) -> int:
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        return 0

    @given(documents)
    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    def agrees(document):
        for ascii_only in (True, False):
            assert json_depth(json.dumps(document, ensure_ascii=ascii_only).encode()) == depth(document)

    agrees()


def test_json_nesting_is_bounded_by_a_setting(predictor):
    doc = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [["x"]]}]}  # 5 levels
    with client_for(predictor, max_json_depth=4) as client:
        refused(client.post(INFER, json=doc), 400, "nested too deep", "5 levels", "--max-json-depth")
    with client_for(predictor, max_json_depth=5) as client:
        response = client.post(INFER, json=doc)
        assert response.status_code in (400, 422) and "nested" not in response.json()["error"]  # read, then refused


def test_json_part_images_and_elements_are_bounded(predictor):
    with client_for(predictor, max_json_bytes=1000, max_images=2, max_elements=1000) as client:
        big = {"inputs": [{"name": "input", "shape": [1, 3, 20, 20], "datatype": "FP32", "data": [0.0] * 1200}]}
        refused(client.post(INFER, json=big), 413, "--max-json-mb")
        body, headers = raw({"input": np.zeros((1, 3, 20, 20)), "factor": np.array([1, 1, 2, 2])})
        refused(client.post(INFER, content=body, headers=headers), 413, "--max-elements")
        body, headers = image_request([encode(picture(4, 4))] * 3, scale=2)
        refused(client.post(INFER, content=body, headers=headers), 413, "--max-images")
        body, headers = image_request([encode(picture(4, 4))] * 2, scale=2)
        assert client.post(INFER, content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "factor",
    [
        [1, 1, 0, 0],
        [1, 1, -2, -2],
        [1, 1, 1e5, 1e5],
        [1, 1, np.nan, np.nan],
        [1, 1, np.inf, np.inf],
        [1, 1, 2.5, 2.5],
        [1, 1, 2, 3],
        [2, 1, 2, 2],
        [1, 1, 9, 9],
    ],
)
def test_raw_factors_are_checked_before_any_engine_runs(client, predictor, monkeypatch, tmp_path, factor):
    from sdk.optimize.cache import OptimizedCache

    cache = OptimizedCache().root
    before = set(cache.glob("*")) if cache.exists() else set()
    runs = []
    monkeypatch.setattr(predictor, "run", lambda feeds: runs.append(feeds))
    body, headers = raw({"input": np.full((1, 3, 4, 4), 100.0), "factor": np.array(factor)})
    started = time.perf_counter()
    refused(client.post(INFER, content=body, headers=headers), 422, "[1, 1, s, s]", "--max-scale")
    assert time.perf_counter() - started < 1.0 and not runs
    assert (set(cache.glob("*")) if cache.exists() else set()) == before


def test_a_non_whole_factor_never_makes_an_optimised_model_cache_entry(predictor):
    from sdk.optimize.cache import OptimizedCache

    cache = OptimizedCache().root
    before = set(cache.glob("*")) if cache.exists() else set()
    out = predictor.run(
        {"input": np.full((1, 3, 4, 4), 100, np.float32), "factor": np.array([1, 1, 2.5, 2.5], np.float32)}
    )
    assert out["output"].shape == (1, 3, 10, 10)
    assert (set(cache.glob("*")) if cache.exists() else set()) == before


def test_non_finite_outputs_are_422_in_json_and_sent_as_binary(client):
    body, headers = raw({"input": np.full((1, 3, 4, 4), np.nan), "factor": np.array([1, 1, 2, 2])}, binary_output=False)
    refused(client.post(INFER, content=body, headers=headers), 422, "binary")
    body, headers = raw({"input": np.full((1, 3, 4, 4), np.nan), "factor": np.array([1, 1, 2, 2])}, binary_output=True)
    assert client.post(INFER, content=body, headers=headers).status_code == 200


def test_empty_tensors_are_400(client):
    body, headers = raw({"input": np.zeros((1, 3, 0, 4)), "factor": np.array([1, 1, 2, 2])})
    refused(client.post(INFER, content=body, headers=headers), 400, "at least 1 element")


def test_internal_failures_are_500_with_a_request_id_and_details_only_in_the_log(predictor, monkeypatch, caplog):
    with client_for(predictor) as client:
        secret = "/home/someone/.cache/deploy-sdk/optimized/abc.onnx: ORT said no"
        monkeypatch.setattr(predictor.pipeline, "run_tensor", lambda *a: (_ for _ in ()).throw(RuntimeError(secret)))
        with caplog.at_level(logging.ERROR, logger="sdk.serve"):
            response = client.post(UPSCALE, params={"scale": 2}, content=encode(picture(8, 8)))
        message = refused(response, 500, "internal error")
        rid = response.headers["x-request-id"]
        assert rid in message and secret not in response.text
        logged = [r for r in caplog.records if rid in r.getMessage()]
        assert logged and secret in str(logged[0].exc_info[1])
        other = client.get("/v2/health/live")
        assert other.headers["x-request-id"] != rid


def test_an_engine_refusing_an_input_is_422_without_its_message(predictor, monkeypatch):
    from sdk.errors import InputError

    def refuse(*args):
        try:
            raise RuntimeError("/tmp/secret.onnx: [ONNXRuntimeError] shape mismatch")
        except RuntimeError as exc:
            raise InputError(f"srcnn3 failed on a 8x8 input: {exc}") from exc

    with client_for(predictor) as client:
        monkeypatch.setattr(predictor.pipeline, "run_tensor", refuse)
        refused(client.post(UPSCALE, params={"scale": 2}, content=encode(picture(8, 8))), 422, "could not run")


def test_max_scale_setting(predictor):
    from sdk import Predictor
    from sdk.serve.limits import Limits
    from sdk.serve.settings import ServeSettings

    assert Limits(predictor, ServeSettings()).max_scale == 8
    assert Limits(predictor, ServeSettings(max_scale=3)).max_scale == 3
    with Predictor("espcn", backend="ort-cpu") as fixed:
        assert Limits(fixed, ServeSettings()).max_scale == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(Exception, match="max_scale"):
            ServeSettings(max_scale=bad)
    with pytest.raises(Exception, match="timeout_s"):
        ServeSettings(timeout_s=float("nan"))
