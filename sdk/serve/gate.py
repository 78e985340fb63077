"""The outermost layer of the app: the token, the two fast inference routes, metrics and the
access log, in plain ASGI (microseconds a request, not a middleware stack)."""

from __future__ import annotations

import hmac
import time

from starlette.requests import Request
from starlette.routing import Route

from .errors import REQUEST_ID, error_response, next_request_id

# Reachable without the token: orchestrators' probes, and the page itself (it holds no data; its
# calls carry the token the user types in).
PUBLIC_PATHS = {"/", "/v2/health/live", "/v2/health/ready"}


class Gate:
    """Token check, then the request to its endpoint; its metrics and access-log line after.

    The two inference routes go straight to their endpoint. Their endpoints answer every error
    themselves (errors.answered), so Starlette's error middleware, exception middleware and
    router have nothing to do for them but cost: a tenth of a millisecond a request on the build
    machine, a few percent of a small image's whole time. Every other path, and anything these two
    would not match exactly as the router does, goes through the Starlette app."""

    def __init__(self, app, server, hot: dict[tuple[str, str], Route]):
        self.app = app
        self.server = server
        self.state = app.state
        self._hot = hot

    def __getattr__(self, name):  # routes, url_path_for ... as on the Starlette app
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        # An id given by whoever made the scope in this process (the Ray front, through call_app); a
        # client's headers never reach the scope's keys.
        rid = scope.get("sdk.request_id") or next_request_id()
        scope["sdk.request_id"] = rid
        reply = Reply(send, rid)
        token = self.server.settings.token
        try:
            if token is not None and scope["path"] not in PUBLIC_PATHS and not authorized(scope, token):
                response = error_response(
                    401, "missing or wrong token: send 'Authorization: Bearer <token>'", {"www-authenticate": "Bearer"}
                )
                await response(scope, receive, reply.send)
            elif (route := self._hot_route(scope)) is not None:
                response = await route.endpoint(Request(scope, receive, reply.send))
                await response(scope, receive, reply.send)
            else:
                await self.app(scope, receive, reply.send)
        finally:
            self.server.finished(scope, reply.status, reply.sent, time.perf_counter() - started)

    def _hot_route(self, scope) -> Route | None:
        """The route of POST /v1/models/{name}/upscale or /v2/models/{name}/infer, with the scope
        filled in as the router fills it; None for anything else."""
        if scope["method"] != "POST" or scope.get("root_path"):  # mounted apps: the router strips the prefix
            return None
        parts = scope["path"].split("/")
        if len(parts) != 5 or parts[0] or parts[2] != "models" or not parts[3]:
            return None
        route = self._hot.get((parts[1], parts[4]))
        if route is not None:
            scope["app"] = self.app
            scope["route"] = route
            scope["endpoint"] = route.endpoint
            scope["path_params"] = {"name": parts[3]}
        return route


class Reply:
    """The ASGI send of a request, noting the status and the bytes sent for metrics and the log, and
    adding the request id (which the log's lines about this request name) to the answer's headers."""

    __slots__ = ("_id", "_send", "sent", "status")

    def __init__(self, send, request_id: str):
        self._send = send
        self._id = (REQUEST_ID.encode(), request_id.encode())
        self.status, self.sent = 500, 0

    async def send(self, message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.sent += len(message.get("body", b""))
        elif kind == "http.response.start":
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), self._id]}
        await self._send(message)


def authorized(scope, token: str) -> bool:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return hmac.compare_digest(given.strip().encode(), token.encode())
    return False
