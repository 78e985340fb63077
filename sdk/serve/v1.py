"""/v1/models/{name}/upscale: an encoded image in (the body, or a multipart form), an encoded image out."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from . import coding
from .errors import answered
from .forms import form_image


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
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):  # parsed off the event loop (forms)
                body = await server.in_worker(form_image, body, content_type)
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
