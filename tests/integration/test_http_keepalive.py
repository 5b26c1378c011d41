"""Connection persistence: HTTP/1.1 and 1.0 keep-alive rules, Connection: close from either
side, pipelining (in order, with bodies, stopped by a close), and the idle timeout.

"Closed" is always observed as EOF on the client socket, bounded by the socket timeout.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Callable

import pytest

from tests.support import RawClient, RawResponse, RunningServer, ok_app

Serve = Callable[..., RunningServer]


def make_app() -> tuple[Any, list[str]]:
    """Echo app: answers 'METHOD path body' with a Content-Length; /close answers Connection: close."""
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        calls.append(scope["path"])
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/slow":
            for _ in range(20):  # let the loop run (and pipelined bytes arrive) before answering
                await asyncio.sleep(0)
        headers = [(b"content-type", b"text/plain")]
        if scope["path"] == "/close":
            headers.append((b"connection", b"close"))
        if scope["path"] == "/sleep":
            await asyncio.sleep(1.2)  # outlives the 0.5 s keep-alive timeout while in flight
        out = f"{scope['method']} {scope['path']} ".encode() + data
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": out, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", b"%d" % len(out)))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app, calls


def req(path: str, version: str = "1.1", extra: bytes = b"", method: str = "GET", data: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: h\r\n".encode() + extra
    if data:
        head += b"Content-Length: %d\r\n" % len(data)
    return head + b"\r\n" + data


def connection_tokens(response: RawResponse) -> set[bytes]:
    return {t.strip().lower() for v in response.header_list(b"connection") for t in v.split(b",")}


def assert_closed(client: RawClient) -> None:
    assert client.buffer == b"", f"unexpected bytes after the response: {client.buffer!r}"
    assert client.is_closed()


def test_http11_keep_alive_by_default(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        for i in range(5):
            client.send(req(f"/r{i}"))
            response = client.read_response()
            assert response.status == 200 and response.body == f"GET /r{i} ".encode()
            assert b"close" not in connection_tokens(response)
    assert calls == [f"/r{i}" for i in range(5)]


def test_http10_closes_by_default(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        client.send(req("/a", version="1.0") + req("/b", version="1.0"))
        response = client.read_response()
        assert response.status == 200 and response.body == b"GET /a "
        assert b"keep-alive" not in connection_tokens(response)
        assert_closed(client)
    assert calls == ["/a"]


def test_http10_keep_alive_when_asked(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        for path in ("/a", "/b"):
            client.send(req(path, version="1.0", extra=b"Connection: Keep-Alive\r\n"))
            response = client.read_response()
            assert response.status == 200 and response.body == f"GET {path} ".encode()
            assert b"keep-alive" in connection_tokens(response)
        # Without the header the next 1.0 request ends the connection again.
        client.send(req("/c", version="1.0"))
        assert client.read_response().body == b"GET /c "
        assert_closed(client)
    assert calls == ["/a", "/b", "/c"]


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close", b"Upgrade, CLOSE"])
def test_request_connection_close(serve: Serve, value: bytes) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        client.send(req("/a", extra=b"Connection: " + value + b"\r\n") + req("/never"))
        response = client.read_response()
        assert response.status == 200 and response.body == b"GET /a "
        assert b"close" in connection_tokens(response)
        assert_closed(client)
    assert calls == ["/a"]


@pytest.mark.parametrize("fields", [
    b"Connection: keep-alive\r\nConnection: close\r\n",
    b"Connection: close\r\nConnection: keep-alive\r\n",
])
@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_close_in_any_of_several_connection_fields_wins(serve: Serve, fields: bytes, version: str) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        client.send(req("/a", version=version, extra=fields) + req("/never"))
        response = client.read_response()
        assert response.status == 200 and b"close" in connection_tokens(response)
        assert_closed(client)
    assert calls == ["/a"]


def test_request_connection_close_with_streaming_response(serve: Serve) -> None:
    app, _ = make_app()
    server = serve(app)
    with server.raw() as client:
        client.send(req("/stream", extra=b"Connection: close\r\n"))
        response = client.read_response()
        assert response.body == b"GET /stream "
        assert b"close" in connection_tokens(response)
        assert_closed(client)


def test_app_connection_close(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        client.send(req("/close") + req("/never"))
        response = client.read_response()
        assert response.status == 200 and response.body == b"GET /close "
        assert response.header_list(b"connection") == [b"close"]  # once, not doubled
        assert_closed(client)
    assert calls == ["/close"]


def test_pipelining_in_order(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    paths = ["/slow", "/b", "/slow", "/stream", "/e"]
    with server.raw() as client:
        client.send(b"".join(req(p) for p in paths))
        for p in paths:
            response = client.read_response()
            assert response.status == 200
            assert response.body == f"GET {p} ".encode()
        client.send(req("/after"))
        assert client.read_response().body == b"GET /after "
    assert calls == paths + ["/after"]


def test_pipelining_with_bodies(serve: Serve) -> None:
    app, _ = make_app()
    server = serve(app)
    chunked = (
        b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    pipeline = (
        req("/one", method="POST", data=b"first body")
        + chunked
        + req("/empty", method="POST", extra=b"Content-Length: 0\r\n")
        + req("/two", method="PUT", data=b"GET /smuggled HTTP/1.1\r\n\r\n")
        + req("/three")
    )
    with server.raw() as client:
        client.send(pipeline)
        expected = [
            b"POST /one first body",
            b"POST /chunked abcdefg",
            b"POST /empty ",
            b"PUT /two GET /smuggled HTTP/1.1\r\n\r\n",
            b"GET /three ",
        ]
        for body in expected:
            response = client.read_response()
            assert response.status == 200
            assert response.body == body


def test_pipelining_byte_by_byte(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    data = req("/a", method="POST", data=b"xyz") + req("/b")
    with server.raw() as client:
        for i in range(len(data)):
            client.send(data[i : i + 1])
        assert client.read_response().body == b"POST /a xyz"
        assert client.read_response().body == b"GET /b "
    assert calls == ["/a", "/b"]


def test_many_pipelined_requests(serve: Serve) -> None:
    """More requests in flight than any internal pipeline queue: all answered, in order."""
    app, calls = make_app()
    server = serve(app)
    n = 200
    with server.raw(timeout=10) as client:
        client.send(b"".join(req(f"/p{i}") for i in range(n)))
        for i in range(n):
            response = client.read_response()
            assert response.body == f"GET /p{i} ".encode()
    assert calls == [f"/p{i}" for i in range(n)]


def test_pipeline_stops_at_close(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        client.send(req("/1") + req("/2", extra=b"Connection: close\r\n") + req("/3") + req("/4"))
        first = client.read_response()
        second = client.read_response()
        assert (first.body, second.body) == (b"GET /1 ", b"GET /2 ")
        assert b"close" not in connection_tokens(first)
        assert b"close" in connection_tokens(second)
        assert_closed(client)
    assert calls == ["/1", "/2"]


def test_pipeline_stops_at_app_close(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app)
    with server.raw() as client:
        client.send(req("/1") + req("/close") + req("/3"))
        assert client.read_response().body == b"GET /1 "
        assert client.read_response().body == b"GET /close "
        assert_closed(client)
    assert calls == ["/1", "/close"]


def test_keep_alive_timeout_closes_idle_connection(serve: Serve) -> None:
    app, _ = make_app()
    # 0.5 s: the request itself must reach the server before the idle clock runs out.
    server = serve(app, timeout_keep_alive=0.5)
    with server.raw(timeout=5) as client:
        client.send(req("/a"))
        assert client.read_response().body == b"GET /a "
        assert_closed(client)  # EOF arrives on its own, well before the 5 s socket timeout


def test_keep_alive_timeout_closes_connection_that_never_sends(serve: Serve) -> None:
    app, calls = make_app()
    server = serve(app, timeout_keep_alive=0.2)
    with server.raw(timeout=5) as client:
        assert client.is_closed()
    assert calls == []


def test_keep_alive_timeout_spares_in_flight_request(serve: Serve) -> None:
    app, _ = make_app()
    server = serve(app, timeout_keep_alive=0.5)
    with server.raw(timeout=5) as client:
        client.send(req("/sleep"))
        response = client.read_response()
        assert response.status == 200 and response.body == b"GET /sleep "
        assert b"close" not in connection_tokens(response)


def test_keep_alive_timeout_spares_a_client_still_sending_an_unread_body(serve: Serve) -> None:
    """The app answered at once without reading the upload; the client goes on sending it for
    longer than the keep-alive timeout. The connection is in use, not idle: the next request on it
    is answered (uvicorn likewise restarts its keep-alive clock on any bytes received)."""

    server = serve(ok_app, timeout_keep_alive=0.3)
    with server.raw(timeout=5) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 8000\r\n\r\n" + b"x" * 1000)
        assert client.read_response().body == b"ok"
        for _ in range(7):  # 7 x 0.15 s: well past the 0.3 s keep-alive timeout
            time.sleep(0.15)
            client.send(b"x" * 1000)
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().body == b"ok"


def test_incomplete_request_head_is_timed_out(serve: Serve) -> None:
    """A client that trickles part of a head and stops (slowloris) does not hold the connection."""
    app, calls = make_app()
    server = serve(app, timeout_request_header=0.3)
    with server.raw(timeout=5) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
        data = client.read_until_close()  # EOF well before the socket timeout
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert calls == []


def test_pipeline_flood_from_a_client_that_never_reads(serve: Serve) -> None:
    """Pipelined requests whose responses are never read must stop being processed once the
    write side is backed up; otherwise responses pile up in server memory without bound."""
    calls = [0]
    response = b"r" * 16384

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        calls[0] += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(response))]})
        await send({"type": "http.response.body", "body": response})

    server = serve(app, timeout_graceful_shutdown=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # no receive autotuning
    sock.connect((server.host, server.port))
    sock.setblocking(False)
    requests = req("/flood") * 4000  # 4000 * 16 KiB = 64 MiB of responses if all were processed
    sent = 0
    deadline = time.monotonic() + 10
    try:
        while sent < len(requests) and time.monotonic() < deadline:
            try:
                sent += sock.send(requests[sent : sent + 65536])
            except BlockingIOError:
                break  # the server stopped reading; what is sent is enough
        stalled = wait_until_stalled(lambda: calls[0])
        assert stalled < 1000, f"{stalled} responses of 16 KiB produced for a client that reads nothing"
    finally:
        sock.close()


def wait_until_stalled(progress: Callable[[], int], timeout: float = 15.0) -> int:
    """Poll ``progress`` until it stops moving for a while; returns the last value."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline:
        value = progress()
        still = still + 1 if value == last else 0
        last = value
        if still >= 10:
            break
        time.sleep(0.05)
    return progress()
