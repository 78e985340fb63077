"""Errors that carry their HTTP status, and the one place where a failure becomes an answer:
``{"error": message}`` with its status, and nothing else leaves the server."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("sdk.serve")


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


async def answered(request, handler):
    """``await handler(request)``, with every failure turned into its answer (and noted in the
    request's scope for the access log)."""
    from ..errors import InputError, SDKError

    try:
        return await handler(request)
    except HTTPError as exc:
        request.scope["sdk.error"] = exc.message
        return error_response(exc.status, exc.message, exc.headers)
    except InputError as exc:
        request.scope["sdk.error"] = str(exc)
        return error_response(400, str(exc))
    except SDKError as exc:
        log.error("request failed: %s", exc)
        request.scope["sdk.error"] = str(exc)
        return error_response(500, str(exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("request %s %s failed", request.method, request.url.path)
        request.scope["sdk.error"] = "internal error"
        return error_response(500, "internal server error; the server log has the details")
