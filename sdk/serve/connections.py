"""Connections, before any request reaches the app: how many may be open, and how long a client may
take to send a request's headers.

uvicorn closes idle keep-alive connections (``--keep-alive``), but it has no deadline for headers:
a socket that sends half a request line stays open for ever, and a thousand of them exhaust the
process's file descriptors, after which the server accepts nobody. So the server's HTTP protocol
(uvicorn's own, httptools or h11) is wrapped here: a connection past ``max_connections`` is answered
503 and closed as soon as it is accepted, and one whose headers are not complete within
``header_timeout_s`` of its first byte (or of its opening) is answered 408 and closed. The body has
its own deadline in the app (admission.Admission.read_body), where the request is known.
"""

from __future__ import annotations

import logging

log = logging.getLogger("sdk.serve")

# File descriptors kept for everything but client sockets: the model and its libraries, the log,
# the listening socket, the event loop's own, worker threads' files.
RESERVED_FDS = 128


def _answer(status: str, message: str) -> bytes:
    body = ('{"error": "%s"}' % message).encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


BUSY = _answer("503 Service Unavailable", "too many open connections; retry in a few seconds")
SLOW = _answer("408 Request Timeout", "the request's headers did not arrive in time; send them at once")


def file_limit() -> int | None:
    """The process's limit on open files, raised to its hard limit first (a server needs more than the
    usual 1024, and raising the soft limit needs no privilege); None where there is no such limit."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_limit(wanted: int) -> int:
    """``wanted``, or less where the file limit would not leave RESERVED_FDS for the rest."""
    limit = file_limit()
    if limit is None:
        return wanted
    room = max(16, limit - RESERVED_FDS)
    if wanted > room:
        log.warning("--max-connections %d is more than the open-file limit allows; using %d", wanted, room)
    return min(wanted, room)


def guarded(base: type, max_connections: int, header_timeout_s: float) -> type:
    """A subclass of uvicorn's HTTP protocol ``base`` with the connection limit and header deadline."""

    class Guarded(base):
        _refused = False
        _header_timer = None

        def connection_made(self, transport) -> None:
            if len(self.connections) >= max_connections:
                self._refused = True
                transport.write(BUSY)
                transport.close()
                return
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            if self._waiting_for_headers():
                if self._header_timer is None:  # the next request on a kept-alive connection
                    self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc) -> None:
            if self._refused:
                return
            self._disarm()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            cycle = self.cycle
            return (cycle is None or cycle.response_complete) and not self.transport.is_closing()

        def _arm(self) -> None:
            if header_timeout_s:
                self._header_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers():
                self.transport.write(SLOW)
                self.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
