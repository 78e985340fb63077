"""/v2/models/{name}/infer: the Open Inference Protocol's inference, raw tensors or encoded images.

Raw tensors are checked against the model and batched across requests when the model has a batch
axis; a request whose one input is BYTES carries encoded images, which take the image path."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..cancel import CancelToken
from ..errors import InputError
from . import coding, protocol
from .batcher import CPU_BATCH_PIXELS
from .errors import answered, bad_request, too_large, unprocessable

# Answers of at most LOOP_BYTES binary bytes (a copy) are encoded on the event loop: a hop to a
# worker thread and back would cost more than the copy (see upscaling.LOOP_PIXELS).
LOOP_BYTES = 4 * 2**20
# Requests whose JSON part is larger are parsed in a worker thread: parsing a few megabytes of JSON
# numbers takes tenths of a second, which the event loop (health checks, other requests) must not wait.
LOOP_JSON_BYTES = 64 * 2**10


class InferRoute:
    def __init__(self, server):
        self.server = server
        predictor = server.predictor
        self._raw_batched = raw_batch_axis(predictor) if server.settings.max_batch > 1 else frozenset()

    async def endpoint(self, request: Request) -> Response:
        return await answered(request, self._infer)

    async def _infer(self, request: Request) -> Response:
        server = self.server
        server.check_model(request)
        admission = server.admission
        body = await admission.read_body(request)  # a slow upload holds no place in the queue
        async with admission.place():
            parsed = await self._parse(body, request.headers.get(protocol.HEADER_LENGTH))
            outputs = await admission.guarded(request, self._outputs(parsed, len(body)))
        if only_bytes_to_copy(parsed, outputs):  # a copy of a few bytes: cheaper here than a thread hop
            data, headers = protocol.encode_response(server.name, parsed, outputs)
        else:
            data, headers = await server.in_worker(protocol.encode_response, server.name, parsed, outputs)
        return Response(data, headers=headers)

    async def _parse(self, body: bytes, header_length: str | None) -> protocol.InferRequest:
        settings = self.server.settings
        args = (body, header_length, settings.max_json_bytes, settings.max_elements, settings.max_json_depth)
        json_part = len(body) if header_length is None or not header_length.isdigit() else int(header_length)
        if json_part <= LOOP_JSON_BYTES:
            return protocol.parse_request(*args)
        return await self.server.in_worker(protocol.parse_request, *args)

    async def _outputs(self, parsed: protocol.InferRequest, body_bytes: int) -> list[protocol.InferOutput]:
        """The outputs; ``body_bytes``, the request's body, counts in the memory budget as held."""
        images = [i for i in parsed.inputs if i.datatype == "BYTES"]
        if images:
            return await self._images(parsed, images, body_bytes)
        predictor, batcher = self.server.predictor, self.server.batcher
        feeds: dict[str, Any] = {i.name: i.data for i in parsed.inputs}
        try:
            from ..feeds import check_feeds

            check_feeds(feeds, predictor.inputs)
        except InputError as exc:
            raise bad_request(str(exc)) from None
        self.server.limits.raw_feeds(feeds, body_bytes)  # before any engine runs: the factor, the result's size
        batched = self._raw_batched  # (check_feeds made sure each of these has its batch axis)
        # Cancelling the awaiting task (timeout, hang-up) cancels the job before it runs, and the token
        # stops its engine call once it runs (when no other request shares the call).
        cancel = CancelToken()
        try:
            if batched and len({len(feeds[n]) for n in batched}) == 1:
                limit = self._raw_limit(feeds, batched)
                results = await asyncio.wrap_future(batcher.submit_feeds(feeds, batched, limit, cancel))
            else:
                results = await asyncio.wrap_future(batcher.call(lambda: predictor.run(feeds, cancel)))
        except asyncio.CancelledError:
            cancel.cancel("the request timed out, or its client hung up")
            raise
        wanted: list[Any] = [o.get("name") for o in parsed.outputs] if parsed.outputs else list(results)
        unknown = [n for n in wanted if n not in results]
        if unknown:
            raise bad_request(f"unknown output(s) {unknown}; the model's outputs are {list(results)}")
        self.server.releaser.after(sum(np.asarray(v).size for v in results.values()) // 3)
        return [protocol.InferOutput(n, np.asarray(results[n])) for n in wanted]

    def _raw_limit(self, feeds: dict, batched: frozenset) -> int:
        """Requests' items per engine call: on CPU no more than the image windows' pixel budget (per
        3-channel item), as for image requests."""
        if self.server.predictor.device != "cpu":
            return 0
        per_item = max(math.prod(feeds[n].shape[1:]) for n in batched)
        return max(1, min(self.server.settings.max_batch, 3 * CPU_BATCH_PIXELS // max(1, per_item)))

    async def _images(self, parsed, images, body_bytes: int) -> list[protocol.InferOutput]:
        if len(parsed.inputs) != 1:
            raise bad_request(
                "an image request has one BYTES input (the encoded images) and nothing else; "
                "put scale and format in the request's parameters"
            )
        image_path = self.server.image_path
        count, most = len(images[0].data), self.server.settings.max_images
        if count > most:
            raise too_large(f"the request carries {count} images; this server takes at most {most} (--max-images)")
        scale = self.server.limits.scale(parsed.parameters.get("scale"))
        fmt = parsed.parameters.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise unprocessable("parameters.format must be a string: png, jpeg or webp")
        if fmt is not None:
            coding.output_format(fmt, None)
        if parsed.outputs and [o.get("name") for o in parsed.outputs] != ["image"]:
            raise bad_request("an image request has one output, 'image' (the encoded results)")
        encoded = await asyncio.gather(*(image_path.upscale_bytes(e, scale, fmt, body_bytes) for e in images[0].data))
        return [protocol.InferOutput("image", [e[0] for e in encoded], shape=images[0].shape)]


def only_bytes_to_copy(parsed: protocol.InferRequest, outputs: list[protocol.InferOutput]) -> bool:
    """Whether a response is only bytes to copy (binary tensors, at most LOOP_BYTES of them): JSON
    numbers and base64 take the worker pool."""
    total = 0
    for out in outputs:
        if not parsed.wants_binary(out.name):
            return False
        total += out.data.nbytes if isinstance(out.data, np.ndarray) else sum(len(e) for e in out.data)
    return total <= LOOP_BYTES


def raw_batch_axis(predictor) -> frozenset:
    """The inputs that carry a batch axis, when raw requests can share engine calls: some input and
    every output have a dynamic first dimension (else each raw request runs alone)."""

    def dynamic(info):
        return len(info.shape) > 0 and not isinstance(info.shape[0], int)

    batched = frozenset(i.name for i in predictor.inputs if dynamic(i))
    if not batched or not all(dynamic(o) for o in predictor.outputs):
        return frozenset()
    return batched
