"""/v1 multipart forms: read on a worker thread (a large upload's parsing never stalls the event loop),
the image found by name or as the only file, and a malformed form a 400 that says what to send."""

from __future__ import annotations

import asyncio
import time

import pytest

httpx = pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("starlette", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from serving import decode, encode, picture  # noqa: E402

UPSCALE = "/v1/models/srcnn3/upscale"
BOUNDARY = "sdk-test-boundary"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename or None, content) parts."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def test_the_image_is_the_field_named_image_else_the_only_file():
    from sdk.serve.forms import form_image

    png = encode(picture(8, 8))
    assert form_image(form(("scale", None, b"2"), ("image", "a.png", png)), CONTENT_TYPE) == png
    assert form_image(form(("upload", "a.png", png), ("note", None, b"hi")), CONTENT_TYPE) == png
    assert form_image(form(("image", None, png)), CONTENT_TYPE) == png  # a plain field, bytes kept as sent


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        (form(("a", "a.png", b"1"), ("b", "b.png", b"2")), CONTENT_TYPE, "not exactly one file"),
        (form(("note", None, b"hi")), CONTENT_TYPE, "no field 'image'"),
        (form(("image", "a.png", b"x"))[:-30], CONTENT_TYPE, "closing boundary"),
        (form(("image", "a.png", b"x")), "multipart/form-data", "no boundary"),
        (form(*[(f"f{i}", None, b"x") for i in range(17)]), CONTENT_TYPE, "more than 16 parts"),
        (b"--" + BOUNDARY.encode() + b"\r\nno header end", CONTENT_TYPE, "send the image as the field"),
    ],
)
def test_malformed_forms_are_400(body, content_type, words):
    from sdk.serve.errors import HTTPError
    from sdk.serve.forms import form_image

    with pytest.raises(HTTPError) as caught:
        form_image(body, content_type)
    assert caught.value.status == 400 and words in caught.value.message


def test_a_large_form_is_parsed_off_the_event_loop(monkeypatch):
    """While an upload's form is being read (held here for a second on purpose), the server answers
    its health check at once: the parsing runs in a worker thread, not on the event loop."""
    from sdk import Predictor
    from sdk.serve import create_app, forms, v1

    parse = forms.form_image

    def slow_parse(body, content_type):
        time.sleep(1.0)
        return parse(body, content_type)

    monkeypatch.setattr(v1, "form_image", slow_parse)
    image = picture(40, 32, seed=2)
    padding = b"p" * (20 * 2**20)  # a large form: 20 MiB of another field beside the image

    async def main(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            upload = asyncio.ensure_future(
                client.post(
                    UPSCALE,
                    params={"scale": 2},
                    content=form(("padding", None, padding), ("image", "a.png", encode(image))),
                    headers={"content-type": CONTENT_TYPE},
                )
            )
            await asyncio.sleep(0.3)  # the upload is in its (slow) parse by now
            started = time.perf_counter()
            health = await client.get("/v2/health/live")
            waited = time.perf_counter() - started
            return await upload, health, waited

    with Predictor("srcnn3", backend="ort-cpu") as p:
        app = create_app(p)
        try:
            answer, health, waited = asyncio.run(main(app))
        finally:
            app.state.server.close()
        want = p(image, scale=2)
    assert health.status_code == 200 and waited < 0.5, waited
    assert answer.status_code == 200, answer.text
    assert decode(answer.content).shape == want.shape
