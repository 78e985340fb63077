"""The routes that describe the server rather than run the model: the Open Inference Protocol's
metadata and health, the /v1 model list, Prometheus metrics, the page, and 404/405 answers."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from . import protocol
from .errors import answered, error_response

SERVER_NAME = "deploy-sdk"


class Metadata:
    def __init__(self, server):
        self.server = server
        self._page = None

    def model_doc(self) -> dict:
        predictor = self.server.predictor

        def tensors(infos):
            return [
                {
                    "name": t.name,
                    "datatype": protocol.datatype_of(t.dtype),
                    "shape": [d if isinstance(d, int) else -1 for d in t.shape],
                }
                for t in infos
            ]

        return {
            "name": self.server.name,
            "versions": ["1"],
            "platform": "onnx",
            "inputs": tensors(predictor.inputs),
            "outputs": tensors(predictor.outputs),
            "parameters": {
                "backend": predictor.backend,
                "device": predictor.device,
                "scale": predictor.scale,
                "image_input": {"name": "image", "datatype": "BYTES"},
            },
        }

    async def server_metadata(self, request: Request) -> Response:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("deploy-sdk")
        except PackageNotFoundError:  # pragma: no cover - a source checkout without install
            ours = "unknown"
        return JSONResponse({"name": SERVER_NAME, "version": ours, "extensions": ["binary_tensor_data"]})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        return JSONResponse({"ready": True})

    async def model_metadata(self, request: Request) -> Response:
        return await answered(request, self._metadata)

    async def _metadata(self, request: Request) -> Response:
        self.server.check_model(request)
        return JSONResponse(self.model_doc())

    async def model_ready(self, request: Request) -> Response:
        return await answered(request, self._model_ready)

    async def _model_ready(self, request: Request) -> Response:
        self.server.check_model(request)
        return JSONResponse({"name": self.server.name, "ready": True})

    async def list_models(self, request: Request) -> Response:
        doc = self.model_doc()
        doc["runtime_scale"] = self.server.predictor.scale is None
        return JSONResponse({"models": [doc]})

    async def metrics(self, request: Request) -> Response:
        metrics = self.server.metrics
        metrics.queue_depth.set(self.server.batcher.queued)
        body, content_type = metrics.render()
        return Response(body, headers={"content-type": content_type})

    async def page(self, request: Request) -> Response:
        if self._page is None:
            self._page = resources.files("sdk.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(self._page)

    async def not_found(self, request: Request, exc) -> Response:
        return error_response(
            404, f"no such endpoint {request.url.path}; see /v2 and /v1/models/{self.server.name}/upscale"
        )

    async def not_allowed(self, request: Request, exc) -> Response:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}")
