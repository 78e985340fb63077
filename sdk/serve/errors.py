"""Errors that carry their HTTP status; every one becomes ``{"error": message}`` at the edge."""

from __future__ import annotations


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
