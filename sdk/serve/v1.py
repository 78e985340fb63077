"""/v1/models/{name}/upscale: an encoded image in (the body, or a multipart form), an encoded image out."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from . import coding
from .errors import answered, bad_request


class UpscaleRoute:
    def __init__(self, server):
        self.server = server

    async def endpoint(self, request: Request) -> Response:
        return await answered(request, self._upscale)

    async def _upscale(self, request: Request) -> Response:
        server = self.server
        server.check_model(request)
        scale = server.limits.scale(request.query_params.get("scale"))
        fmt = request.query_params.get("format")
        if fmt is not None:
            coding.output_format(fmt, None)  # a bad format is refused before any work
        admission = server.admission
        body = await admission.read_body(request)  # a slow upload holds no place in the queue
        async with admission.place():
            started = time.perf_counter()
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                body = await _form_image(request, body)
            data, content_type, (w, h), (ow, oh) = await admission.guarded(
                request, server.image_path.upscale_bytes(body, scale, fmt)
            )
        ms = (time.perf_counter() - started) * 1000
        predictor = server.predictor
        return Response(
            data,
            media_type=content_type,
            headers={
                "x-sdk-model": server.name,
                "x-sdk-backend": predictor.backend,
                "x-sdk-device": predictor.device,
                "x-sdk-scale": str(scale),
                "x-sdk-input-size": f"{w}x{h}",
                "x-sdk-output-size": f"{ow}x{oh}",
                "x-sdk-time-ms": f"{ms:.1f}",
            },
        )


async def _form_image(request: Request, body: bytes) -> bytes:
    """The image of a multipart form: the field 'image', else the only file."""

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = Request(request.scope, replay)
    try:
        form = await form_request.form(max_files=4, max_fields=16)
    except Exception as exc:  # python-multipart's errors are many; all mean a malformed form
        raise bad_request(f"the multipart form cannot be read ({exc}); send the image as the field 'image'") from None
    item = form.get("image")
    if item is None:
        files = [v for _, v in form.multi_items() if hasattr(v, "read")]
        if len(files) != 1:
            raise bad_request("the multipart form has no field 'image' (and not exactly one file)")
        item = files[0]
    if isinstance(item, str):
        return item.encode("latin-1")
    return await item.read()
