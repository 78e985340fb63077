"""The Open Inference Protocol (KServe v2) of a real ``sdk serve``, as Triton's HTTP clients speak it."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from serving import Server, decode, encode, max_diff, picture


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server("srcnn3", "--tile", "64", log_dir=tmp_path_factory.mktemp("serve")) as s:
        yield s


@pytest.fixture(scope="module")
def predictor():
    from sdk import Predictor

    with Predictor("srcnn3", backend="ort-cpu") as p:
        yield p


def feeds(seed=0, h=12, w=10, scale=2):
    rng = np.random.default_rng(seed)
    return {
        "input": (rng.random((2, 3, h, w), dtype=np.float32) * 255),
        "factor": np.array([1, 1, scale, scale], dtype=np.float32),
    }


def binary_request(inputs: dict, outputs=None, request_parameters=None) -> tuple[bytes, dict]:
    """The body a Triton HTTP client sends: a JSON header, then each input's raw bytes."""
    entries, blobs = [], []
    for name, array in inputs.items():
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append(
            {"name": name, "shape": list(array.shape), "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
        )
        blobs.append(raw)
    doc = {"inputs": entries}
    if outputs is not None:
        doc["outputs"] = outputs
    if request_parameters is not None:
        doc["parameters"] = request_parameters
    head = json.dumps(doc).encode()
    return head + b"".join(blobs), {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def split_binary_response(response) -> tuple[dict, bytes]:
    length = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:length]), response.content[length:]


def test_health_and_metadata(server):
    c = server.client
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/health/ready").status_code == 200
    meta = c.get("/v2").json()
    assert meta["name"] and "binary_tensor_data" in meta["extensions"]
    model = c.get("/v2/models/srcnn3").json()
    assert model["name"] == "srcnn3" and model["platform"] == "onnx"
    assert {i["name"]: i["datatype"] for i in model["inputs"]} == {"input": "FP32", "factor": "FP32"}
    assert model["inputs"][0]["shape"] == [-1, 3, -1, -1]
    assert c.get("/v2/models/srcnn3/ready").status_code == 200
    missing = c.get("/v2/models/nope/ready")
    assert missing.status_code == 404 and "srcnn3" in missing.json()["error"]


def test_infer_with_json_data_equals_predictor_run(server, predictor):
    f = feeds()
    request = {
        "id": "r1",
        "inputs": [
            {"name": "input", "shape": list(f["input"].shape), "datatype": "FP32", "data": f["input"].ravel().tolist()},
            {"name": "factor", "shape": [4], "datatype": "FP32", "data": [[1, 1], [2, 2]]},  # nested is row-major too
        ],
    }
    response = server.client.post("/v2/models/srcnn3/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "srcnn3" and body["id"] == "r1"
    (out,) = body["outputs"]
    assert out["name"] == "output" and out["datatype"] == "FP32" and out["shape"] == [2, 3, 24, 20]
    expected = predictor.run(f)["output"]
    np.testing.assert_array_equal(np.array(out["data"], dtype=np.float32).reshape(out["shape"]), expected)


def test_infer_with_binary_data_equals_predictor_run(server, predictor):
    f = feeds(seed=1, h=9, w=14, scale=3)
    body, headers = binary_request(f, outputs=[{"name": "output", "parameters": {"binary_data": True}}])
    response = server.client.post("/v2/models/srcnn3/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    head, raw = split_binary_response(response)
    (out,) = head["outputs"]
    assert out["parameters"]["binary_data_size"] == len(raw) and "data" not in out
    result = np.frombuffer(raw, dtype="<f4").reshape(out["shape"])
    np.testing.assert_array_equal(result, predictor.run(f)["output"])


def test_concurrent_raw_requests_share_engine_calls_and_each_gets_its_rows(server, predictor):
    """Triton's dynamic batching: same-shaped raw requests (with the same scale factor) run together."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    requests = [feeds(seed=10 + i, h=48, w=40, scale=3) for i in range(16)]
    requests[3] = feeds(seed=3, h=48, w=40, scale=2)  # another factor: never in the same call as the rest
    for f in requests[::5]:
        f["input"] = np.concatenate([f["input"], f["input"][:1] * 0.5])  # three rows, not two

    def post(f):
        body, headers = binary_request(f, request_parameters={"binary_data_output": True})
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.post("/v2/models/srcnn3/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        head, raw = split_binary_response(response)
        return np.frombuffer(raw, dtype="<f4").reshape(head["outputs"][0]["shape"])

    calls_before = server.metric("sdk_serve_batch_size_count")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(post, requests))
    calls = server.metric("sdk_serve_batch_size_count") - calls_before
    for f, result in zip(requests, results):
        # The same rows as a run of its own, up to float rounding (a batch may take other kernels).
        np.testing.assert_allclose(result, predictor.run(f)["output"], rtol=1e-5, atol=1e-3)
    assert calls < len(requests), f"{len(requests)} concurrent raw requests took {calls} engine calls"


def test_binary_inputs_with_json_outputs_and_request_level_binary_flag(server, predictor):
    f = feeds(seed=2)
    body, headers = binary_request(f)
    as_json = server.client.post("/v2/models/srcnn3/infer", content=body, headers=headers)
    assert as_json.headers["content-type"].startswith("application/json")
    np.testing.assert_array_equal(
        np.array(as_json.json()["outputs"][0]["data"], dtype=np.float32), predictor.run(f)["output"].ravel()
    )
    body, headers = binary_request(f, request_parameters={"binary_data_output": True})
    head, raw = split_binary_response(server.client.post("/v2/models/srcnn3/infer", content=body, headers=headers))
    assert len(raw) == head["outputs"][0]["parameters"]["binary_data_size"]


def test_bytes_input_holding_an_encoded_image_gets_the_full_pipeline(server, predictor):
    images = [picture(30, 40, seed=4), picture(70, 90, seed=5)]  # the second runs as windows
    blobs = [encode(i) for i in images]
    raw = b"".join(struct.pack("<I", len(b)) + b for b in blobs)
    head = json.dumps(
        {
            "parameters": {"scale": 2, "format": "png"},
            "inputs": [
                {"name": "image", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
            ],
            "outputs": [{"name": "image", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = server.client.post(
        "/v2/models/srcnn3/infer", content=head + raw, headers={"Inference-Header-Content-Length": str(len(head))}
    )
    assert response.status_code == 200, response.text
    doc, data = split_binary_response(response)
    out = doc["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [2]
    results, offset = [], 0
    while offset < len(data):
        (n,) = struct.unpack_from("<I", data, offset)
        results.append(decode(data[offset + 4 : offset + 4 + n]))
        offset += 4 + n
    assert max_diff(results[0], predictor(images[0], scale=2)) == 0
    assert max_diff(results[1], predictor(images[1], scale=2)) <= 1
    # JSON form: base64 in, base64 out.
    request = {
        "parameters": {"scale": 2},
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"content_type": "base64"},
                "data": [base64.b64encode(blobs[0]).decode()],
            }
        ],
    }
    out = server.client.post("/v2/models/srcnn3/infer", json=request).json()["outputs"][0]
    assert out["parameters"]["content_type"] == "base64"
    assert max_diff(decode(base64.b64decode(out["data"][0])), results[0]) == 0


@pytest.mark.parametrize(
    "request_doc, status, words",
    [
        ({"inputs": []}, 400, "non-empty"),
        ({"inputs": [{"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [1.0]}]}, 400, "holds 12"),
        ({"inputs": [{"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP99", "data": []}]}, 400, "datatype"),
        ({"inputs": [{"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.0] * 12}]}, 400, "factor"),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 3, 2, 2], "datatype": "INT32", "data": [0] * 12},
                    {"name": "factor", "shape": [4], "datatype": "FP32", "data": [1, 1, 2, 2]},
                ]
            },
            400,
            "float32",
        ),
        (
            {
                "parameters": {"scale": 0},
                "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
            },
            422,
            "scale",
        ),
        (
            {
                "parameters": {"scale": 2},
                "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
            },
            400,
            "not an image",
        ),
    ],
)
def test_errors_are_in_the_protocol_form(server, request_doc, status, words):
    response = server.client.post("/v2/models/srcnn3/infer", json=request_doc)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and words in response.json()["error"]


def test_binary_header_length_that_does_not_fit_is_400(server):
    body, headers = binary_request(feeds())
    headers["Inference-Header-Content-Length"] = str(len(body) + 5)
    response = server.client.post("/v2/models/srcnn3/infer", content=body, headers=headers)
    assert response.status_code == 400 and "does not fit" in response.json()["error"]
    body, headers = binary_request(feeds())
    response = server.client.post("/v2/models/srcnn3/infer", content=body + b"xx", headers=headers)
    assert response.status_code == 400 and "must match" in response.json()["error"]


def test_protocol_round_trip_in_process():
    from sdk.serve import protocol

    array = np.arange(6, dtype=np.float16).reshape(2, 3)
    request = protocol.InferRequest(None, [], [{"name": "y", "parameters": {"binary_data": True}}], {})
    body, headers = protocol.encode_response(
        "m", request, [protocol.InferOutput("x", array), protocol.InferOutput("y", array)]
    )
    length = int(headers[protocol.HEADER_LENGTH])
    doc = json.loads(body[:length])
    assert doc["outputs"][0]["data"] == [0, 1, 2, 3, 4, 5] and doc["outputs"][0]["datatype"] == "FP16"
    assert np.array_equal(np.frombuffer(body[length:], "<f2").reshape(2, 3), array)
