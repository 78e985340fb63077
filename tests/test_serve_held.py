"""The memory budget in ``sdk serve`` counts what a request holds besides the engine's windows and the
stitched result (sdk.serve.coding.held_bytes: its bytes, the decoded picture, the answer): a request
that fits only when those are left out is planned into smaller windows, or refused with 413 before
decoding. In-process; the peak RSS of a real server is tests/test_memory_budget.py's."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("starlette", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from serving import encode, padded, picture

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

UPSCALE = "/v1/models/srcnn3/upscale"
MiB = 2**20


@pytest.fixture(scope="module")
def predictor():
    from sdk import Predictor

    with Predictor("srcnn3", backend="ort-cpu") as p:
        yield p


@pytest.fixture
def client(predictor):
    from starlette.testclient import TestClient

    from sdk.serve import create_app

    with TestClient(create_app(predictor)) as c:  # every setting at its default (tile 256)
        yield c


def plans(predictor, monkeypatch) -> list:
    """The plans the server asks the Predictor for, with the ``held`` bytes it passed."""
    made = []
    plan = predictor.plan

    def spy(*args, **kwargs):
        made.append((kwargs.get("held", 0), plan(*args, **kwargs)))
        return made[-1][1]

    monkeypatch.setattr(predictor, "plan", spy)
    return made


def test_a_request_whose_body_does_not_fit_the_budget_beside_its_picture_is_413_before_decoding(
    client, predictor, monkeypatch
):
    from sdk import memory
    from sdk.serve import coding

    monkeypatch.setenv(memory.ENV, "32MiB")
    small = encode(picture(64, 64))
    assert client.post(UPSCALE, params={"scale": 2}, content=small).status_code == 200  # the picture fits
    decoded = []
    load = coding.load
    monkeypatch.setattr(coding, "load", lambda header: (decoded.append(1), load(header))[1])
    # The same picture in a 24 MiB body (under --max-body-mb): with the decoder's copy of the chunk
    # it holds 48 MiB, more than the whole budget; uncounted, it ran as the small one did.
    response = client.post(UPSCALE, params={"scale": 2}, content=padded(small, 24 * MiB))
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert "memory budget" in message and "smaller image" in message and "$SDK_MEMORY_BUDGET" in message
    assert not decoded  # refused from the header, before a pixel was inflated


def test_a_large_body_makes_the_server_plan_smaller_windows(client, predictor, monkeypatch):
    from sdk import memory

    monkeypatch.setenv(memory.ENV, "96MiB")
    made = plans(predictor, monkeypatch)
    plain = encode(picture(512, 512, seed=4))
    assert client.post(UPSCALE, params={"scale": 2}, content=plain).status_code == 200
    assert client.post(UPSCALE, params={"scale": 2}, content=padded(plain, 20 * MiB)).status_code == 200
    (held_plain, plan_plain), (held_padded, plan_padded) = made
    assert held_padded - held_plain == 2 * (20 * MiB + 12)  # the chunk (and its 12-byte frame), the decoder's copy
    area = lambda plan: plan.window[0] * plan.window[1] * plan.batch  # noqa: E731  (pixels per engine call)
    assert area(plan_padded) < area(plan_plain), (plan_plain, plan_padded)


def test_the_answer_estimate_covers_the_encoded_answer_of_noise():
    """held_bytes counts the answer as at most the raw result and its container (1/64 more): true of
    every writer the server uses, on the least compressible picture there is."""
    from PIL import Image

    from sdk import images
    from sdk.serve import coding

    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)
    bound = noise.size + noise.size // 64
    header = coding.open_header(encode(noise[:192, :256]), 10**8)
    assert coding.held_bytes(0, 0, header, 2, "png") >= bound + coding.DECODED_BYTES_PER_PIXEL * 192 * 256
    with_profile = images.Decoded(noise, icc_profile=Image.new("RGB", (1, 1)).info.get("icc_profile") or b"x" * 64)
    for fmt, source in (("png", None), ("png", with_profile), ("jpeg", None), ("webp", None)):
        data, _ = coding.encode(noise, fmt, source)
        extra = len(source.icc_profile) if source is not None else 0  # counted with the request's bytes
        assert len(data) - extra <= bound, (fmt, len(data), bound)
