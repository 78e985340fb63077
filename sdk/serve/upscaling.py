"""The image path: encoded image -> windows batched with other requests' -> encoded result.

An image is decoded, cut into windows of one shape (so that requests share engine calls), each
window prepared, run by the batcher, finished and stitched back, and the result encoded. Small
images do all of it on the event loop; the rest in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import numpy as np

from .. import images, tiling
from ..cancel import CancelToken
from . import coding
from .batcher import CPU_BATCH_PIXELS, Batcher
from .limits import Limits
from .release import Releaser
from .runner import TileRunner

# Small work runs on the event loop rather than in a worker thread: a hop to a thread and back costs
# two wake-ups and a GIL hand-over each way, and on the 2-core build machine (busy: load average
# about 4) skipping them for espcn 64x64 took the server's CPU from about 9.0 to 7.3 ms a request at
# 16 clients and its p50 at one client from +2.6 to +1.8 ms over in-process. Images whose result has
# at most LOOP_PIXELS pixels (about a millisecond of decoding, pre/post-processing and encoding; a
# slow encoder still goes to a worker) stay on the loop.
LOOP_PIXELS = 256 * 256


class ImagePath:
    """Upscales encoded images for both protocols, their windows batched through ``batcher``."""

    def __init__(
        self, predictor, settings, limits: Limits, batcher: Batcher, runner: TileRunner, in_worker, releaser: Releaser
    ):
        self.predictor = predictor
        self.releaser = releaser  # told of each image large enough to leave memory behind
        self.settings = settings
        self.limits = limits
        self.batcher = batcher
        self.runner = runner
        self.in_worker = in_worker  # async fn(callable, *args): runs it in the server's worker pool

    async def upscale_bytes(
        self, data: bytes, scale: int, fmt_name: str | None, request_bytes: int = 0
    ) -> tuple[bytes, str, tuple, tuple]:
        """Encoded image -> (encoded result, content type, (w, h) in, (w, h) out): a small one on the
        event loop, any other in a worker thread; either way its windows run with other requests'.
        ``request_bytes``: the body of a request that carries more than this image (/v2), else 0."""
        header = coding.open_header(data, self.settings.max_pixels)
        fmt = coding.output_format(fmt_name, header.source_format)
        # --max-pixels and memory, before decoding; then the Predictor's own plan for this image: whole
        # when it fits one --tile window, else windows of one shape at this scale (requests share engine
        # calls), with the margin this scale needs and a static-size model's own windows. The budget
        # counts what the request holds besides: its bytes, the decoded picture and the answer.
        held = coding.held_bytes(request_bytes, len(data), header, scale, fmt)
        plan = self.limits.image(header.height, header.width, scale, held=held)
        if self._on_loop(header, scale, plan):
            return await self._upscale_on_loop(header, scale, fmt, plan)
        ticket = _Ticket(self.batcher)
        try:
            return await self.in_worker(self._upscale_sync, header, scale, fmt, plan, ticket)
        except asyncio.CancelledError:
            ticket.cancel()  # its queued tiles are dropped before they reach the engine
            raise
        finally:
            self.releaser.after(header.height * header.width * scale * scale)

    def _on_loop(self, header: coding.Header, scale: int, plan: tiling.Plan) -> bool:
        """Whether an image is too small for a thread of its own: it runs as one window (no tiling)
        and its result has at most LOOP_PIXELS pixels. Its engine call still runs on the batcher's
        thread, with other requests' windows; only the millisecond around it stays on the loop."""
        return not plan.tiled and header.height * header.width * scale * scale <= LOOP_PIXELS

    async def _upscale_on_loop(self, header: coding.Header, scale: int, fmt: str, plan: tiling.Plan):
        decoded = self._decoded(header, scale, fmt)
        pixels = decoded.pixels[None]
        tensor, prepared = self.runner.prepare(pixels, scale)
        limit = self._window_limit(pixels, plan.batch)
        # Cancelling this await (timeout, hang-up) cancels the job: the batcher drops it unrun.
        out = self.runner.finish(await asyncio.wrap_future(self.batcher.submit(tensor, scale, limit)), prepared)[0]
        if coding.quick_to_encode(fmt, decoded):
            body, content_type = coding.encode(out, fmt, decoded)
        else:  # Pillow's PNG or WebP: milliseconds the loop should not stall for
            body, content_type = await self.in_worker(coding.encode, out, fmt, decoded)
        return body, content_type, (header.width, header.height), (out.shape[1], out.shape[0])

    def _decoded(self, header: coding.Header, scale: int, fmt: str) -> images.Decoded:
        """The pixels, once the answer is known to fit its format and memory."""
        coding.check_size(fmt, header.height * scale, header.width * scale)
        return coding.load(header)

    def _upscale_sync(self, header: coding.Header, scale: int, fmt: str, plan: tiling.Plan, ticket: _Ticket):
        ticket.begin()  # decoding: this request will submit soon, so a forming batch may wait for it
        try:
            decoded = self._decoded(header, scale, fmt)
            pixels = decoded.pixels[None]
            if plan.tiled:
                out = tiling.upscale_tiled(
                    pixels,
                    scale,
                    plan,
                    lambda windows: self._run_windows(windows, scale, plan.batch, ticket),
                    cancel=ticket.token,
                )[0]
            else:  # whole: the finished result is the answer's pixels (stitching would copy it whole)
                out = self._run_windows(pixels, scale, plan.batch, ticket)[0]
        finally:
            ticket.end()
        ticket.token.check()  # timed out during the last window: a large PNG's encoding is seconds more
        body, content_type = coding.encode(out, fmt, decoded)
        return body, content_type, (header.width, header.height), (out.shape[1], out.shape[0])

    def _window_limit(self, windows: np.ndarray, limit: int) -> int:
        """Windows per engine call: the plan's, and on CPU no more than CPU_BATCH_PIXELS."""
        if self.predictor.device == "cpu":
            limit = min(limit, max(1, CPU_BATCH_PIXELS // (windows.shape[1] * windows.shape[2])))
        return limit

    def _run_windows(self, windows: np.ndarray, scale: int, limit: int, ticket: _Ticket) -> np.ndarray:
        """sdk.tiling's window runner: prepare here, run on the batcher's thread with other requests'
        windows of the same shape (or right here when the engine is idle and nobody else is coming),
        finish here."""
        ticket.token.check()
        limit = self._window_limit(windows, limit)
        ticket.begin()
        try:
            tensor, prepared = self.runner.prepare(windows, scale)
            future = ticket.future = self.batcher.submit(tensor, scale, limit, inline=True, cancel=ticket.token)
        finally:
            ticket.end()
        if ticket.token.cancelled:
            future.cancel()
        return self.runner.finish(future.result(), prepared)


class _Ticket:
    """One image request's link to the batcher: whether it is about to submit, and how to call it off
    (its token stops its windows between engine calls, and an engine call once no other request
    shares it)."""

    def __init__(self, batcher: Batcher):
        self.batcher = batcher
        self.token = CancelToken()
        self.future: Future | None = None
        self._preparing = False
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            if not self._preparing and not self.token.cancelled:
                self._preparing = True
                self.batcher.preparing(+1)

    def end(self) -> None:
        with self._lock:
            if self._preparing:
                self._preparing = False
                self.batcher.preparing(-1)

    def cancel(self) -> None:
        self.token.cancel("the request timed out, or its client hung up")
        future = self.future
        if future is not None:
            future.cancel()
        self.end()
