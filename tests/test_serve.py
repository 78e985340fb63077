"""The image endpoint, errors, limits and access of a real ``sdk serve`` subprocess."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from serving import Server, decode, encode, max_diff, picture

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(
        "srcnn3",
        "--tile",
        "64",
        "--max-pixels",
        "1000000",
        "--max-body-mb",
        "2",
        token=TOKEN,
        log_dir=tmp_path_factory.mktemp("serve"),
    ) as s:
        yield s


@pytest.fixture(scope="module")
def predictor():
    from sdk import Predictor

    with Predictor("srcnn3", backend="ort-cpu") as p:
        yield p


def upscale(server, data: bytes, **params):
    return server.client.post("/v1/models/srcnn3/upscale", params=params, content=data)


def test_small_image_runs_whole_and_equals_predictor(server, predictor):
    image = picture(40, 56)
    response = upscale(server, encode(image), scale=3)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-sdk-backend"] == "ort-cpu" and response.headers["x-sdk-output-size"] == "168x120"
    assert max_diff(decode(response.content), predictor(image, scale=3)) == 0


def test_large_image_runs_as_windows_and_equals_predictor(server, predictor):
    image = picture(150, 97, seed=3)  # 3 x 2 windows of 64 px on this server
    response = upscale(server, encode(image), scale=2)
    assert response.status_code == 200, response.text
    assert max_diff(decode(response.content), predictor(image, scale=2)) <= 1


def test_multipart_upload_and_output_formats(server, predictor):
    image = picture(32, 32, seed=1)
    response = server.client.post(
        "/v1/models/srcnn3/upscale",
        params={"scale": 2, "format": "webp"},
        files={"image": ("a.png", encode(image), "image/png")},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert decode(response.content).shape == (64, 64, 3)
    jpeg = upscale(server, encode(image, "JPEG", quality=95), scale=2)
    assert jpeg.headers["content-type"] == "image/jpeg"  # the input's own format by default


def test_exif_orientation_and_icc_profile_are_handled(server, predictor):
    from PIL import Image, ImageCms

    image = picture(24, 40, seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the upright picture is 40 x 24 tall
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(image, "JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc)
    response = upscale(server, data, scale=2, format="png")
    assert response.status_code == 200, response.text
    result = Image.open(io.BytesIO(response.content))
    assert result.size == (48, 80)
    assert result.info.get("icc_profile") == icc


def test_garbage_is_400_with_the_sdk_message(server):
    response = upscale(server, b"this is not an image at all", scale=3)
    assert response.status_code == 400
    assert "not an image" in response.json()["error"]
    truncated = encode(picture(64, 64))[:200]
    response = upscale(server, truncated, scale=3)
    assert response.status_code == 400 and "Traceback" not in response.text


def test_wrong_scale_is_422(server):
    for scale in ("0", "2.5", "two"):
        response = upscale(server, encode(picture(8, 8)), scale=scale)
        assert response.status_code == 422, (scale, response.text)
        assert "scale" in response.json()["error"]
    missing = upscale(server, encode(picture(8, 8)))
    assert missing.status_code == 422 and "scale=N" in missing.json()["error"]
    assert upscale(server, encode(picture(8, 8)), scale=2, format="gif").status_code == 422


def test_unknown_model_or_route_is_404_in_protocol_form(server):
    response = server.client.post("/v1/models/other/upscale", params={"scale": 2}, content=b"x")
    assert response.status_code == 404 and "srcnn3" in response.json()["error"]
    assert "error" in server.client.get("/nowhere").json()


def bomb_png(width: int, height: int) -> bytes:
    """A valid grayscale PNG of zeros: a few hundred KB that inflate to width x height bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor, parts = zlib.compressobj(9), []
    rows = b"\0" * ((width + 1) * 500)
    for _ in range(height // 500):
        parts.append(compressor.compress(rows))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header_in_milliseconds(server):
    import psutil

    bomb = bomb_png(10000, 10000)  # 100 Mpixel, ~100 KB on the wire
    assert len(bomb) < 2**20
    rss = psutil.Process(server.proc.pid).memory_info().rss
    upscale(server, encode(picture(8, 8)), scale=2)  # warm the connection
    times = []
    for _ in range(5):  # the best of five: a machine shared with other jobs may stall any one request
        started = time.perf_counter()
        response = upscale(server, bomb, scale=2)
        times.append(time.perf_counter() - started)
        assert response.status_code == 413, response.text
        assert "10000x10000" in response.json()["error"]
    assert min(times) < 0.1, f"refusing the bomb took {[round(t * 1000) for t in times]} ms"
    assert psutil.Process(server.proc.pid).memory_info().rss - rss < 50 * 2**20  # 100 MB were never inflated


def test_body_over_the_limit_is_413(server):
    response = upscale(server, b"\0" * (3 * 2**20), scale=2)
    assert response.status_code == 413 and "--max-body" in response.json()["error"]


def test_missing_or_wrong_token_is_401(server):
    import httpx

    data = encode(picture(8, 8))
    url = f"{server.url}/v1/models/srcnn3/upscale?scale=2"
    assert httpx.post(url, content=data).status_code == 401
    wrong = httpx.post(url, content=data, headers={"authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert "token" in wrong.json()["error"]
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200  # probes need no token


def test_metrics_and_access_log(server):
    upscale(server, encode(picture(16, 16)), scale=2)
    ok = server.metric("sdk_serve_requests_total", route="/v1/models/{name}/upscale", status="200")
    assert ok >= 1
    assert server.metric("sdk_serve_batch_size_count") >= 1
    assert server.metric("sdk_serve_engine_seconds_count") >= 1
    text = server.client.get("/metrics").text
    for name in ("sdk_serve_request_seconds_bucket", "sdk_serve_queue_depth", "sdk_serve_requests_in_flight"):
        assert name in text
    import json

    def logged():  # access lines are written by a thread of their own, a few milliseconds late
        return [json.loads(entry) for entry in server.log().splitlines() if entry.startswith("{")]

    deadline = time.monotonic() + 5
    while not any(entry["route"] == "/metrics" for entry in logged()) and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = logged()
    assert any(
        entry["route"] == "/v1/models/{name}/upscale" and entry["status"] == 200 and entry["ms"] > 0 for entry in lines
    )
    assert any(entry["status"] == 401 for entry in lines)


def test_no_stack_trace_leaves_the_server(server):
    for response in (
        upscale(server, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, scale=2),
        server.client.post("/v2/models/srcnn3/infer", content=b"{not json"),
        server.client.post("/v2/models/srcnn3/infer", json={"inputs": [{"name": "input"}]}),
    ):
        assert 400 <= response.status_code < 500
        assert "Traceback" not in response.text and set(response.json()) == {"error"}


def test_binding_beyond_loopback_needs_a_token_or_no_auth(monkeypatch):
    from sdk.cli import build_parser
    from sdk.errors import SDKError
    from sdk.serve.commands import settings_from

    monkeypatch.delenv("SDK_SERVE_TOKEN", raising=False)
    parse = build_parser().parse_args
    with pytest.raises(SDKError, match="--token"):
        settings_from(parse(["serve", "srcnn3", "--host", "0.0.0.0"]))
    assert settings_from(parse(["serve", "srcnn3", "--host", "0.0.0.0", "--token", "t0k"])).token == "t0k"
    assert settings_from(parse(["serve", "srcnn3", "--host", "0.0.0.0", "--no-auth"])).token is None
    monkeypatch.setenv("SDK_SERVE_TOKEN", "from-env")
    assert settings_from(parse(["serve", "srcnn3", "--host", "10.1.2.3"])).token == "from-env"
    assert settings_from(parse(["serve", "srcnn3"])).token == "from-env"
    assert settings_from(parse(["serve", "srcnn3", "--host", "::1"])) is not None


def test_a_bad_memory_budget_fails_before_the_model_loads():
    from sdk.cli import build_parser
    from sdk.errors import InputError
    from sdk.serve.commands import settings_from

    with pytest.raises(InputError, match="--memory-budget: memory size 'lots' is not a size"):
        settings_from(build_parser().parse_args(["serve", "srcnn3", "--memory-budget", "lots"]))


def test_import_sdk_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, sdk, sdk.cli; sdk.cli.build_parser(); "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'prometheus_client', 'ray', 'multipart') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
