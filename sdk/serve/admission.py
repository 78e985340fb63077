"""Request admission and limits: places in the bounded queue, the body's size, and each request's
deadline (its timeout, or the client hanging up)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import cast

from starlette.requests import ClientDisconnect, Request

from .errors import HTTPError, too_large


class Admission:
    """What one server lets in at once, and for how long."""

    def __init__(self, settings, metrics):
        self.settings = settings
        self.metrics = metrics
        self.admitted = 0
        self.reading = 0  # bytes of request bodies being read now
        self.latency = 1.0  # a running mean of request seconds, for Retry-After

    def observe(self, seconds: float) -> None:
        """An inference request was answered in ``seconds`` (sets the next Retry-After)."""
        self.latency = 0.9 * self.latency + 0.1 * seconds

    @contextlib.asynccontextmanager
    async def place(self):
        """A place in the bounded queue, or a 503 telling the client when to come back."""
        if self.admitted >= self.settings.max_queue:
            self.metrics.rejected.inc()
            retry = max(1, math.ceil(self.latency * self.admitted / max(1, self.settings.max_batch)))
            raise HTTPError(
                503,
                f"the server is busy ({self.admitted} requests in flight, --max-queue "
                f"{self.settings.max_queue}); retry in {retry} s",
                {"retry-after": str(retry)},
            )
        self.admitted += 1
        self.metrics.in_flight.set(self.admitted)
        try:
            yield
        finally:
            self.admitted -= 1
            self.metrics.in_flight.set(self.admitted)

    async def read_body(self, request: Request) -> bytes:
        """The request's body, read before the request takes a place in the queue (a slow upload holds
        no place), within its deadline and the server's memory for bodies in flight.

        Deadline: --body-timeout seconds, plus one second per --min-body-rate bytes that arrived (a
        large body on a slow but steady link gets the time it needs; a trickle is cut). Memory: the
        bytes of all bodies being read stay under --max-reading-mb; past it, a 503 at once."""
        settings = self.settings
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(f"the body is {int(declared)} bytes; this server takes at most {limit} (--max-body-mb)")
        loop = asyncio.get_running_loop()
        task = cast(asyncio.Task, asyncio.current_task())  # a request always runs in a task
        started, grace, rate = loop.time(), settings.body_timeout_s, settings.min_body_rate
        late: list[bool] = []

        def too_slow() -> None:
            late.append(True)
            task.cancel()

        timer = loop.call_at(started + grace, too_slow) if grace else None
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(f"the body is over {limit} bytes (--max-body-mb)")
                if self.reading + len(chunk) > settings.max_reading_bytes:
                    self.metrics.rejected.inc()
                    raise HTTPError(
                        503,
                        "the server is reading too many request bodies at once (--max-reading-mb); retry in 1 s",
                        {"retry-after": "1", "connection": "close"},
                    )
                self.reading += len(chunk)
                chunks.append(chunk)
                if timer is not None and chunk:
                    timer.cancel()
                    timer = loop.call_at(started + grace + size / rate, too_slow)
        except asyncio.CancelledError:
            if not late:
                raise  # the server is going down
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancellation is handled here
                task.uncancel()
            raise HTTPError(
                408,
                f"the body did not arrive in time ({size} bytes in {loop.time() - started:.0f} s; --body-timeout "
                f"{grace:g} s plus 1 s per {rate / 2**20:g} MiB): send it at once, on a faster link",
                {"connection": "close"},
            ) from None
        except ClientDisconnect:
            raise HTTPError(499, "the client closed the connection") from None
        finally:
            if timer is not None:
                timer.cancel()
            self.reading -= sum(len(c) for c in chunks)
        return b"".join(chunks)

    async def guarded(self, request: Request, work):
        """Await ``work`` within the request timeout; a client that hangs up cancels it (its queued
        tiles are dropped before they reach the engine).

        ``work`` runs in the request's own task, which the timer or the hang-up cancels: a task of its
        own would cost two turns of the event loop (one to start, one to hand its result back), about
        a third of a millisecond per request on the build machine."""
        task = cast(asyncio.Task, asyncio.current_task())  # a request always runs in a task
        stopped: list[str] = []
        over: list[bool] = []

        def stop(why: str) -> None:
            if not stopped and not over:  # once, and never after the work is over (a late callback)
                stopped.append(why)
                task.cancel()

        timeout = self.settings.timeout_s
        timer = asyncio.get_running_loop().call_later(timeout, stop, "timeout") if timeout else None
        watcher = asyncio.ensure_future(_disconnected(request))
        watcher.add_done_callback(lambda w: None if w.cancelled() or w.exception() is not None else stop("hang-up"))
        try:
            return await work
        except asyncio.CancelledError:
            if not stopped:
                raise  # cancelled from outside: the server is going down
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancellation is handled here
                task.uncancel()
        finally:
            over.append(True)
            if timer is not None:
                timer.cancel()
            watcher.cancel()
        if stopped[0] == "hang-up":
            raise HTTPError(499, "the client closed the connection")
        raise HTTPError(
            504,
            f"the request took longer than {timeout:g} s (--timeout); "
            "send a smaller image or retry when the server is less busy",
        )


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it passes ``limit`` bytes (the rest is never read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
