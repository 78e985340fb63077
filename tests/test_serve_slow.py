"""Slow and idle clients against a real ``sdk serve`` on the loopback: half-sent headers, trickled
bodies, idle keep-alives and more connections than allowed are each cut, in bounded time, while a
normal client is still answered."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")

from serving import Server, encode, picture

UPSCALE = "/v1/models/srcnn3/upscale"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(
        "srcnn3",
        "--tile",
        "64",
        "--max-queue",
        "2",
        "--max-connections",
        "40",
        "--header-timeout",
        "1",
        "--body-timeout",
        "1",
        "--min-body-rate-mb",
        "1",
        "--max-body-mb",
        "16",
        "--max-reading-mb",
        "1",
        "--keep-alive",
        "1",
        log_dir=tmp_path_factory.mktemp("serve"),
    ) as s:
        yield s


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def normal_request(server) -> int:
    return server.client.post(UPSCALE, params={"scale": 2}, content=encode(picture(16, 16))).status_code


def test_half_sent_headers_are_answered_408_and_closed(server):
    sockets = [connect(server) for _ in range(30)]
    for sock in sockets:
        sock.sendall(b"POST /v1/models/srcnn3/upscale?scale=2 HTTP/1.1\r\nHost: x\r\n")
    assert normal_request(server) == 200
    started = time.monotonic()
    answers = [read_all(sock) for sock in sockets]
    assert time.monotonic() - started < 5
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    for sock in sockets:
        sock.close()


def test_a_silent_connection_is_closed_after_the_header_timeout(server):
    sock = connect(server)
    started = time.monotonic()
    assert read_all(sock).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 5
    sock.close()


def test_a_trickled_body_is_cut_with_408_and_holds_no_queue_place(server):
    # --max-queue 2: three trickling uploads would take every place if reading the body held one.
    sockets = []
    for _ in range(3):
        sock = connect(server)
        sock.sendall(
            b"POST /v1/models/srcnn3/upscale?scale=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"
            + b"x" * 1024
        )
        sockets.append(sock)
    assert normal_request(server) == 200  # no 503: the trickles hold no place
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for sock in sockets:
                try:
                    sock.send(b"x" * 1024)
                except OSError:
                    pass
            time.sleep(0.2)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    started = time.monotonic()
    try:
        answers = [read_all(sock) for sock in sockets]
    finally:
        stop.set()
        feeder.join()
    assert time.monotonic() - started < 6
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:1]
    assert b"--body-timeout" in answers[0]
    for sock in sockets:
        sock.close()


def test_bodies_in_flight_are_bounded_in_bytes(server):
    # --max-reading-mb 1: one upload holds 900 KiB while it waits; a second one's bytes would pass 1 MiB.
    first = connect(server)
    first.sendall(
        b"POST /v1/models/srcnn3/upscale?scale=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"
        + b"x" * 900 * 1024
    )
    time.sleep(0.3)
    second = server.client.post(UPSCALE, params={"scale": 2}, content=b"y" * 300 * 1024)
    assert second.status_code == 503 and "--max-reading-mb" in second.json()["error"]
    first.close()
    time.sleep(0.3)
    assert normal_request(server) == 200


def test_idle_keep_alive_connections_are_closed(server):
    sock = connect(server)
    body = encode(picture(8, 8))
    sock.sendall(
        b"POST /v1/models/srcnn3/upscale?scale=2 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    started = time.monotonic()
    answer = read_all(sock, timeout=10)  # the answer, then the close after --keep-alive 1
    assert answer.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 5
    sock.close()


def test_connections_past_the_limit_are_refused_at_once(server):
    held = [connect(server) for _ in range(45)]  # --max-connections 40
    try:
        time.sleep(0.3)
        started = time.monotonic()
        refused = [s for s in held[-5:] if read_all(s, timeout=0.5).startswith(b"HTTP/1.1 503")]
        assert refused and time.monotonic() - started < 5
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert normal_request(server) == 200


def test_the_connection_limit_stays_below_the_open_file_limit(monkeypatch):
    from sdk.serve import connections

    monkeypatch.setattr(connections, "file_limit", lambda: 1024)
    assert connections.connection_limit(4096) == 1024 - connections.RESERVED_FDS
    assert connections.connection_limit(100) == 100
    monkeypatch.setattr(connections, "file_limit", lambda: None)
    assert connections.connection_limit(4096) == 4096
