"""Defences that are on by default: head and body deadlines, body size limit, strict Host,
the connection limit, Retry-After, and stalled WSGI clients not starving the pool. Real server,
raw sockets, both parsers; every timer is configured short."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from tests.support import RawClient, RunningServer

GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def recording_app(calls: list[Any], read_body: bool = True) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        received = 0
        last: dict[str, Any] = {}
        if read_body:
            while True:
                last = await receive()
                received += len(last.get("body", b""))
                if last["type"] != "http.request" or not last.get("more_body"):
                    break
        calls.append((scope["path"], received, last.get("type")))
        if last.get("type") == "http.disconnect":
            return
        body = str(received).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return app


def read_all(client: RawClient) -> bytes:
    return client.read_until_close()


# -- the request head deadline ---------------------------------------------------------------


def test_slow_head_within_its_deadline_is_served_past_the_keep_alive_timeout(serve: Any) -> None:
    """Before, a head shared --timeout-keep-alive: a trickling client was cut off without an answer."""
    calls: list[Any] = []
    server = serve(recording_app(calls), timeout_keep_alive=0.2, timeout_request_header=5)
    with server.raw() as client:
        for i in range(0, len(GET), 4):
            client.send(GET[i:i + 4])
            time.sleep(0.05)  # the whole head takes ~0.35 s, past the keep-alive timeout
        assert client.read_response().status == 200
    assert len(calls) == 1


def test_head_deadline_counts_from_the_first_byte_however_slow_the_trickle(serve: Any) -> None:
    calls: list[Any] = []
    server = serve(recording_app(calls), timeout_request_header=0.5)
    with server.raw(timeout=10) as client:
        client.send(GET)  # a first request: the connection is not fresh afterwards
        assert client.read_response().status == 200
        started = time.monotonic()
        answer = b""
        head = b"GET /slow HTTP/1.1\r\nHost: h\r\nX-Drip: " + b"a" * 100
        for byte in head:  # one byte every 20 ms keeps arriving, but never the end of the head
            try:
                client.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.02)
            if time.monotonic() - started > 1.5:
                break
        answer = read_all(client)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert 0.4 < elapsed < 3.0, elapsed
    assert [c[0] for c in calls] == ["/"]


def test_first_request_head_deadline_counts_from_the_accept(serve: Any) -> None:
    server = serve(recording_app([]), timeout_request_header=0.6, timeout_keep_alive=10)
    with server.raw(timeout=10) as client:
        started = time.monotonic()
        time.sleep(0.4)
        client.send(b"GET / HT")
        answer = read_all(client)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert elapsed < 1.0 + 0.4, elapsed  # 0.6 s from the accept (plus the sweep's step), not from the byte


def test_a_silent_connection_is_closed_without_a_408(serve: Any) -> None:
    server = serve(recording_app([]), timeout_keep_alive=0.2, timeout_request_header=0.2)
    with server.raw(timeout=5) as client:
        assert read_all(client) == b""


# -- request bodies -----------------------------------------------------------------------------


def test_declared_body_over_the_limit_gets_413_and_the_app_is_not_called(serve: Any) -> None:
    calls: list[Any] = []
    server = serve(recording_app(calls), limit_request_body=1000)
    with server.raw() as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001)
        response = client.read_response()
        assert response.status == 413
        assert client.is_closed()
    assert calls == []


def test_declared_body_at_the_limit_is_served(serve: Any) -> None:
    server = serve(recording_app([]), limit_request_body=1000)
    with server.raw() as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
        assert client.read_response().body == b"1000"


def test_chunked_body_over_the_limit_is_cut_at_the_limit(serve: Any) -> None:
    calls: list[Any] = []
    server = serve(recording_app(calls), limit_request_body=10_000)
    with server.raw() as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                client.send(b"400\r\n" + b"c" * 1024 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = client.read_response()
        assert response.status == 413
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    path, received, last = calls[0]
    assert received <= 10_000 and last == "http.disconnect"  # the app never read past the limit


def test_wsgi_chunked_upload_over_the_limit_gets_413(serve: Any) -> None:
    seen: list[int] = [0]

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        total = 0
        try:
            while True:
                block = environ["wsgi.input"].read(4096)
                if not block:
                    break
                total += len(block)
                seen.append(total)
        except OSError:
            pass
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(total).encode()]

    server = serve(app, limit_request_body=8192)
    with server.raw() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(8):
                client.send(b"1000\r\n" + b"w" * 4096 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert client.read_response().status == 413
    assert max(seen) <= 8192  # the app may not run at all: the limit was hit before it started
    assert '"POST / HTTP/1.1" 413' in server.logs.text()


def test_stalled_upload_gets_408_and_the_app_a_disconnect(serve: Any) -> None:
    calls: list[Any] = []
    server = serve(recording_app(calls), timeout_request_body=0.3)
    with server.raw(timeout=10) as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
        started = time.monotonic()
        response = client.read_response()
        elapsed = time.monotonic() - started
        assert response.status == 408
        assert client.is_closed()
    assert 0.25 < elapsed < 3.0
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [("/up", 40, "http.disconnect")]


def test_a_slow_app_is_not_a_stalled_upload(serve: Any) -> None:
    """While the app does not read (reading paused by backpressure) the body timer waits."""
    import asyncio

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(0.8)
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(total).encode()})

    size = 4 * 1024 * 1024
    server = serve(app, timeout_request_body=0.3)
    with server.raw(timeout=15) as client:
        sender = threading.Thread(
            target=lambda: client.sock.sendall(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size + b"b" * size
            ),
            daemon=True,
        )
        sender.start()
        response = client.read_response()
        sender.join(10)
    assert response.status == 200 and response.body == str(size).encode()


# -- Host ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, ok",
    [
        (b"example.com", True), (b"example.com:8080", True), (b"127.0.0.1", True), (b"[::1]:80", True),
        (b"", True), (b"xn--bcher-kva.example", True), (b"a%20b", True),
        (b"exa mple.com", False), (b"example.com/path", False), (b"user@example.com", False),
        (b"example.com:80:80", False), (b"example.com:http", False), (b"[::1", False), (b"a\"b", False),
    ],
)
def test_host_must_be_a_uri_host_and_port(serve: Any, host: bytes, ok: bool) -> None:
    calls: list[Any] = []
    server = serve(recording_app(calls))
    with server.raw() as client:
        client.send(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        response = client.read_response()
    assert response.status == (200 if ok else 400)
    assert len(calls) == (1 if ok else 0)


@pytest.mark.parametrize(
    "head",
    [b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"],
)
def test_missing_or_repeated_host_is_400(serve: Any, head: bytes) -> None:
    calls: list[Any] = []
    server = serve(recording_app(calls))
    with server.raw() as client:
        client.send(head)
        assert client.read_response().status == 400
    assert calls == []


# -- concurrency and connections --------------------------------------------------------------------


def test_limit_concurrency_503_carries_retry_after(serve: Any) -> None:
    import asyncio

    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, limit_concurrency=1)
    with server.raw() as busy, server.raw() as refused:
        busy.send(GET)
        time.sleep(0.1)
        refused.send(GET)
        response = refused.read_response()
        assert response.status == 503 and response.header(b"retry-after") == b"1"
        release.set()
        assert busy.read_response().status == 200


def test_limit_connections_holds_new_connections_until_one_closes(serve: Any) -> None:
    import asyncio

    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            while not release.is_set():
                await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    server = serve(app, limit_connections=2)
    first, second = server.raw(timeout=10), server.raw(timeout=10)
    try:
        for client in (first, second):
            client.send(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n")
        time.sleep(0.2)
        third = server.raw(timeout=10)  # the kernel completes the handshake; the server waits
        third.send(b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
        third.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            third.sock.recv(1)  # not served while two connections are busy
        third.sock.settimeout(10)
        release.set()
        # The two finish and go idle: at the limit, idle keep-alive connections make room.
        assert first.read_response().status == 200 and second.read_response().status == 200
        assert third.read_response().body == b"/third"
        assert "Connection limit (2) reached" in server.logs.text()
        third.close()
    finally:
        first.close()
        second.close()


# -- stalled WSGI clients -----------------------------------------------------------------------------


def test_stalled_wsgi_downloads_do_not_starve_new_requests(serve: Any) -> None:
    """4 threads, 4 clients that stopped reading 1 GiB downloads: a new request is answered
    within seconds (the pool frees threads whose clients stall while requests wait)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/big":
            start_response("200 OK", [("Content-Length", str(1 << 30))])
            block = b"g" * 65536
            return (block for _ in range((1 << 30) // 65536))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fresh"]

    server: RunningServer = serve(app, threads=4, wsgi_send_timeout=60)
    stalled = []
    try:
        for _ in range(4):
            client = server.raw(timeout=10)
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            stalled.append(client)  # and never read
        time.sleep(0.5)  # let their threads fill the buffers and block
        started = time.monotonic()
        with server.raw(timeout=15) as fresh:
            fresh.send(GET)
            response = fresh.read_response()
        elapsed = time.monotonic() - started
    finally:
        for client in stalled:
            client.close()
    assert response.body == b"fresh"
    assert elapsed < 6, elapsed  # not wsgi_send_timeout (60 s)
    assert "WSGI response aborted" in server.logs.text()
