"""Graceful shutdown as clients see it: in-flight requests finish (with Connection: close), idle
keep-alive connections are closed, requests already received are answered, stuck apps get
http.disconnect and then are cancelled after --timeout-graceful-shutdown, and
--limit-max-requests stops the server by itself.

Shutdown is triggered with ``server.request_shutdown()``; "the server stopped" is
``thread.join(timeout)`` returning with the thread gone.
"""
from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from typing import Any, Callable

import httpx
import pytest

from asgiserve.server import GRACE
from tests.support import RunningServer

Serve = Callable[..., RunningServer]


async def wait_thread_event(event: threading.Event, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("test never released the app")
        await asyncio.sleep(0.002)


def req(path: str = "/", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n".encode() + extra + b"\r\n"


def wait_refused(server: RunningServer, timeout: float = 5.0) -> None:
    """Wait (bounded) until the listening socket is gone: new connections are refused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            probe = socket.create_connection((server.host, server.port), timeout=1)
        except (ConnectionRefusedError, ConnectionResetError):  # reset: the listener closed mid-handshake
            return
        probe.close()
        time.sleep(0.01)
    raise AssertionError("the server kept accepting connections after shutdown was requested")


def assert_stops(server: RunningServer, timeout: float = 10.0) -> None:
    server.thread.join(timeout)
    assert not server.thread.is_alive(), "server did not stop"
    assert not server.error, server.error


def connection_close(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"connection" and b"close" in v.lower() for k, v in headers)


def send_then_stop(server: RunningServer, app: "HoldApp", client: Any, request: bytes) -> None:
    """Send ``request``, begin the stop once the app holds it, then let the app go on."""
    try:
        client.send(request)
        assert app.entered.wait(5)
        server.server.request_shutdown()
        wait_refused(server)
    finally:
        app.release.set()


class HoldApp:
    """/hold waits for the test's release; /stream-hold sends a first chunk then waits; else 'ok'."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.events: "queue.Queue[str]" = queue.Queue()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            self.events.put("lifespan.shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path == "/stream-hold":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first,", "more_body": True})
            self.entered.set()
            await wait_thread_event(self.release)
            await send({"type": "http.response.body", "body": b"second"})
            self.events.put("request.done")
            return
        if path == "/hold":
            self.entered.set()
            await wait_thread_event(self.release)
        out = b"ok:" + path.encode() + (b":" + data if data else b"")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(out))]})
        await send({"type": "http.response.body", "body": out})
        self.events.put("request.done")


def test_in_flight_request_finishes_with_connection_close(serve: Serve) -> None:
    app = HoldApp()
    server = serve(app)
    with server.raw(timeout=10) as client:
        try:
            client.send(req("/hold"))
            assert app.entered.wait(5)
            server.server.request_shutdown()
            wait_refused(server)  # stopped accepting, while the request is still running
            assert server.thread.is_alive()
        finally:
            app.release.set()
        response = client.read_response()
        assert response.status == 200 and response.body == b"ok:/hold"
        assert connection_close(response.headers)
        assert client.buffer == b"" and client.is_closed()
    assert_stops(server)
    assert app.events.get(timeout=5) == "request.done"
    assert app.events.get(timeout=5) == "lifespan.shutdown"  # lifespan shutdown after the drain


def test_in_flight_streaming_response_completes(serve: Serve) -> None:
    app = HoldApp()
    server = serve(app)
    with server.raw(timeout=10) as client:
        send_then_stop(server, app, client, req("/stream-hold"))
        response = client.read_response()
        assert response.status == 200 and response.body == b"first,second"
        assert client.buffer == b"" and client.is_closed()
    assert_stops(server)


def test_idle_keep_alive_connections_are_closed(serve: Serve) -> None:
    app = HoldApp()
    server = serve(app)
    clients = [server.raw(timeout=10) for _ in range(3)]
    try:
        for client in clients:
            client.send(req("/idle"))
            response = client.read_response()
            assert response.status == 200 and not connection_close(response.headers)
        server.server.request_shutdown()
        for client in clients:
            assert client.is_closed()  # EOF, without waiting for the keep-alive timeout
    finally:
        for client in clients:
            client.close()
    assert_stops(server)


def test_idle_connections_closed_while_another_request_drains(serve: Serve) -> None:
    app = HoldApp()
    server = serve(app, timeout_keep_alive=60)
    holder, idle = server.raw(timeout=10), server.raw(timeout=10)
    try:
        idle.send(req("/idle"))
        assert idle.read_response().status == 200
        holder.send(req("/hold"))
        assert app.entered.wait(5)
        server.server.request_shutdown()
        assert idle.is_closed()
        assert server.thread.is_alive()
        app.release.set()
        response = holder.read_response()
        assert response.status == 200 and connection_close(response.headers)
    finally:
        app.release.set()
        holder.close()
        idle.close()
    assert_stops(server)


def test_request_already_received_is_answered(serve: Serve) -> None:
    """Bytes of a complete request already on an accepted connection get a response, not a reset."""
    app = HoldApp()
    server = serve(app)
    with server.raw(timeout=10) as client:
        client.send(req("/first"))
        assert client.read_response().status == 200  # the connection is surely accepted now
        client.send(req("/second"))
        server.server.request_shutdown()
        # The request may be answered before or during the drain; either way it is answered.
        response = client.read_response()
        assert response.status == 200 and response.body == b"ok:/second"
        assert client.buffer == b"" and client.is_closed()
    assert_stops(server)


def test_upload_in_progress_completes(serve: Serve) -> None:
    """A request whose body is still arriving is in flight: the rest of its body is read."""
    entered = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            entered.set()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got:" + data})

    server = serve(app)
    with server.raw(timeout=10) as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
        assert entered.wait(5)
        server.server.request_shutdown()
        wait_refused(server)
        client.send(b"56789")
        response = client.read_response()
        assert response.status == 200 and response.body == b"got:0123456789"
        assert connection_close(response.headers)
    assert_stops(server)


def test_graceful_timeout_sends_disconnect(serve: Serve) -> None:
    seen: "queue.Queue[dict[str, Any]]" = queue.Queue()
    entered = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        entered.set()
        seen.put(await receive())  # a long-poll / SSE app waiting to hear the client left

    server = serve(app, timeout_graceful_shutdown=0.2)
    with server.raw(timeout=10) as client:
        client.send(req("/sse"))
        status, _, _ = client.read_head()
        assert status == 200
        assert entered.wait(5)
        server.server.request_shutdown()
        assert seen.get(timeout=10) == {"type": "http.disconnect"}
        rest = client.buffer + client.read_until_close()
        assert not rest.endswith(b"0\r\n\r\n"), rest  # cut off, not faked complete
    assert_stops(server)


def test_graceful_timeout_cancels_stuck_app(serve: Serve) -> None:
    outcome: "queue.Queue[str]" = queue.Queue()
    entered = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        entered.set()
        try:
            await asyncio.Event().wait()  # ignores everything, including http.disconnect
        except asyncio.CancelledError:
            outcome.put("cancelled")
            raise

    server = serve(app, timeout_graceful_shutdown=0.2)
    with server.raw(timeout=15) as client:
        client.send(req("/stuck"))
        assert entered.wait(5)
        server.server.request_shutdown()
        assert_stops(server, timeout=15)
        assert outcome.get(timeout=1) == "cancelled"
        data = client.buffer + client.read_until_close()
        assert data == b"" or data.startswith(b"HTTP/1.1 5"), data  # never a hang, never a fake 200


def test_forced_shutdown_does_not_wait(serve: Serve) -> None:
    outcome: "queue.Queue[str]" = queue.Queue()
    entered = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.put("cancelled")
            raise

    server = serve(app, timeout_graceful_shutdown=60)
    with server.raw(timeout=15) as client:
        client.send(req("/stuck"))
        assert entered.wait(5)
        server.server.request_shutdown(force=True)
        assert_stops(server, timeout=10)  # far less than the 60 s graceful timeout
        assert outcome.get(timeout=1) == "cancelled"


def test_limit_max_requests_stops_the_server(serve: Serve) -> None:
    app = HoldApp()
    server = serve(app, limit_max_requests=3)
    with server.raw(timeout=10) as client:
        responses = []
        for i in range(3):
            client.send(req(f"/r{i}"))
            responses.append(client.read_response())
        assert [r.status for r in responses] == [200, 200, 200]
        assert [r.body for r in responses] == [b"ok:/r0", b"ok:/r1", b"ok:/r2"]
        assert connection_close(responses[-1].headers)  # the last one is answered during the drain
        assert client.buffer == b"" and client.is_closed()
    assert_stops(server)
    assert server.server.total_requests == 3
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()


def test_limit_max_requests_across_connections(serve: Serve) -> None:
    app = HoldApp()
    server = serve(app, limit_max_requests=2)
    for i in range(2):
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get(f"/c{i}").status_code == 200
    assert_stops(server)


def test_shutdown_with_no_connections_is_prompt(serve: Serve) -> None:
    app = HoldApp()
    server = serve(app, timeout_graceful_shutdown=60)
    server.server.request_shutdown()
    assert_stops(server, timeout=10)
    assert app.events.get(timeout=5) == "lifespan.shutdown"


def test_pipelined_request_behind_in_flight_one(serve: Serve) -> None:
    """A request already received behind the in-flight one on the same connection is answered
    too (not dropped for the client to retry); the last response says Connection: close."""
    app = HoldApp()
    server = serve(app)
    with server.raw(timeout=10) as client:
        send_then_stop(server, app, client, req("/hold") + req("/queued"))
        first = client.read_response()
        assert first.status == 200 and first.body == b"ok:/hold" and not connection_close(first.headers)
        second = client.read_response()
        assert second.body == b"ok:/queued" and connection_close(second.headers)
        assert client.is_closed()
    assert_stops(server)


def test_keep_alive_promised_before_the_stop_still_gets_its_next_request_served(serve: Serve) -> None:
    """A streamed response whose head (keep-alive) went out before the stop: when it ends, the
    client's next request on that connection is answered with Connection: close, not dropped."""
    app = HoldApp()
    server = serve(app)
    with server.raw(timeout=10) as client:
        send_then_stop(server, app, client, req("/stream-hold"))
        first = client.read_response()
        assert first.body == b"first,second" and not connection_close(first.headers)
        client.send(req("/next"))
        second = client.read_response()
        assert second.status == 200 and second.body == b"ok:/next" and connection_close(second.headers)
        assert client.is_closed()
    assert_stops(server)



def test_connection_accepted_before_shutdown_still_gets_its_first_request_served(serve: Serve) -> None:
    """A client that connected just before the stop and sends its request a moment later
    (the usual case during a reload under load) is answered, not reset."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late but served"})

    server = serve(app)
    client = server.raw()
    # Make sure the server has accepted the connection before it is told to stop.
    client.send(b"")
    with httpx.Client() as probe:
        assert probe.get(server.url).status_code == 200  # the loop has run since the connect
    server.server.request_shutdown()
    wait_refused(server)
    client.send(req("/late"))
    response = client.read_response()
    assert response.status == 200 and response.body == b"late but served"
    assert connection_close(response.headers)
    assert_stops(server)


def test_keep_alive_connection_answered_a_moment_ago_gets_its_next_request_served(serve: Serve) -> None:
    """A client busy on a keep-alive connection sends its next request right as the stop begins
    (a reload under load): it is answered with Connection: close, not dropped. A connection idle
    for longer than the grace is still closed at once."""
    app = HoldApp()
    server = serve(app)
    busy, idle = server.raw(timeout=10), server.raw(timeout=10)
    try:
        idle.send(req("/idle"))
        assert idle.read_response().status == 200
        time.sleep(GRACE + 0.2)  # idle for longer than the grace
        busy.send(req("/first"))
        assert busy.read_response().status == 200
        server.server.request_shutdown()
        wait_refused(server)  # the stop has begun
        assert idle.is_closed()
        busy.send(req("/next"))
        response = busy.read_response()
        assert response.status == 200 and connection_close(response.headers)
        assert busy.is_closed()
    finally:
        busy.close()
        idle.close()
    assert_stops(server)


def test_silent_connection_does_not_hold_up_shutdown(serve: Serve) -> None:
    """A connection that never sends anything is closed after the short grace, not kept until
    --timeout-graceful-shutdown."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    server = serve(app, timeout_graceful_shutdown=30)
    client = server.raw(timeout=10)
    with httpx.Client() as probe:
        probe.get(server.url)
    server.server.request_shutdown()
    assert client.is_closed()
    assert_stops(server, timeout=10)  # well inside the 30 s graceful timeout
