"""Errors that carry their HTTP status, and the one place where a failure becomes an answer:
``{"error": message}`` with its status, and nothing else leaves the server.

What a client caused gets a 4xx whose message says what to send instead. Internals - paths, an
engine's own messages, tracebacks - stay in the server's log, on a line that names the request id
the answer carries in its ``x-request-id`` header."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os

log = logging.getLogger("sdk.serve")

REQUEST_ID = "x-request-id"
_PREFIX = os.urandom(3).hex()  # ids from two runs of the server do not collide in one log
_COUNTER = itertools.count(1)


def next_request_id() -> str:
    return f"{_PREFIX}-{next(_COUNTER)}"


def request_id(scope) -> str:
    found = scope.get("sdk.request_id")
    if found is None:
        found = scope["sdk.request_id"] = next_request_id()
    return found


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def too_large(message: str) -> HTTPError:
    return HTTPError(413, message)


def bad_request(message: str) -> HTTPError:
    return HTTPError(400, message)


def unprocessable(message: str) -> HTTPError:
    return HTTPError(422, message)


def error_response(status: int, message: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def failure(scope, exc: BaseException) -> HTTPError:
    """The answer to a failure that is not an HTTPError: the SDK's own input errors as 4xx (their
    messages are written for users), anything else a 500 whose details go to the log only."""
    from ..errors import InputError, TooLargeError

    rid = request_id(scope)
    if isinstance(exc, InputError):
        cause = exc.__cause__
        if cause is None or isinstance(cause, InputError):
            return HTTPError(413 if isinstance(exc, TooLargeError) else 400, str(exc))
        # An engine refused the input: its message may name files and internals.
        log.warning("request %s: the engine refused the input: %s", rid, exc)
        return unprocessable(
            f"the model could not run on this input (request {rid}; the server log has the engine's message); "
            "check its size and values against /v2/models/NAME"
        )
    log.error("request %s %s %s failed", rid, scope.get("method"), scope.get("path"), exc_info=exc)
    return HTTPError(500, f"internal error (request {rid}); the server log has the details")


async def answered(request, handler):
    """``await handler(request)``, with every failure turned into its answer (and noted in the
    request's scope for the access log)."""
    try:
        return await handler(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = exc if isinstance(exc, HTTPError) else failure(request.scope, exc)
        request.scope["sdk.error"] = error.message
        return error_response(error.status, error.message, error.headers)
