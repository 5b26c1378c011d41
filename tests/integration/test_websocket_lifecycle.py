"""A WebSocket's life in the server (both parsers): keepalive pings, flow control in both directions
(bounded memory), sends after the close, graceful shutdown, --limit-concurrency and
--timeout-keep-alive, app errors and returns after the accept, and the access log.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import queue
import re
import select
import socket
import threading
import time
from typing import Any, Callable, Iterator

import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import RunningServer
from tests.wsclient import BINARY, PING, TEXT, WSClient, build_frame, handshake_request

Serve = Callable[..., RunningServer]
MiB = 1024 * 1024


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


async def wait_thread_event(event: threading.Event, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the app")
        await asyncio.sleep(0.005)


class Echo:
    """Accepts, echoes, records the websocket.disconnect it gets."""

    def __init__(self) -> None:
        self.disconnects: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.accepted = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        self.accepted.set()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects.put(message)
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})


def ws_connect(server: RunningServer, path: str = "/", **kw: Any) -> Any:
    return connect(f"ws://{server.host}:{server.port}{path}", proxy=None, open_timeout=5, close_timeout=5, **kw)


def access_lines(server: RunningServer) -> list[str]:
    return [r.getMessage() for r in server.logs.records if r.name == "asgiserve.access" and r.levelno >= logging.INFO]


class Boom(RuntimeError):
    pass


def error_records(server: RunningServer, exc_type: type = Boom) -> list[logging.LogRecord]:
    return [r for r in server.logs.records if r.exc_info and isinstance(r.exc_info[1], exc_type) and r.levelno >= logging.ERROR]


# -- the app ends after the accept -----------------------------------------------------------------

async def raise_after_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": "got " + message["text"]})
    raise Boom("after accept")


async def return_after_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})


def test_app_raising_after_accept_closes_with_1011_and_logs(serve: Serve) -> None:
    server = serve(raise_after_accept)
    with WSClient.connect(server.host, server.port) as ws:
        ws.send_text("x")
        assert ws.recv_text() == "got x"
        assert ws.read_close()[0] == 1011
    (record,) = wait_until(lambda: error_records(server), what="the error log")
    assert record.exc_info and record.exc_info[2] is not None


def test_app_returning_after_accept_closes_with_1000(serve: Serve) -> None:
    server = serve(return_after_accept)
    with WSClient.connect(server.host, server.port) as ws:
        assert ws.recv_text() == "bye"
        assert ws.read_close()[0] == 1000
        ws.send_close(1000)
        assert ws.wait_eof() == "eof"
    assert not error_records(server, Exception)


# -- keepalive pings ---------------------------------------------------------------------------

def test_idle_connection_gets_pings(serve: Serve) -> None:
    server = serve(Echo(), ws_ping_interval=0.2, ws_ping_timeout=5)
    with WSClient.connect(server.host, server.port) as ws:
        for _ in range(3):  # answered pings keep coming, and the connection stays open
            frame = ws.recv_frame(timeout=2)
            assert frame.opcode == PING and not frame.masked
            ws.send_frame(0xA, frame.payload)
        ws.send_text("still open")
        assert ws.recv_text() == "still open"


def test_client_that_never_answers_pings_is_closed_with_1011(serve: Serve) -> None:
    server = serve(Echo(), ws_ping_interval=0.2, ws_ping_timeout=0.3)
    start = time.monotonic()
    with WSClient.connect(server.host, server.port) as ws:
        code, _ = ws.read_close(timeout=5)  # skips the unanswered pings
        elapsed = time.monotonic() - start
        assert code == 1011
        assert 0.4 <= elapsed < 2.5, elapsed  # interval + timeout = 0.5 s, with slack both ways


def test_client_answering_pings_is_kept(serve: Serve) -> None:
    server = serve(Echo(), ws_ping_interval=0.1, ws_ping_timeout=0.2)
    # The websockets client answers pings on its own; its own keepalive is off.
    with connect(f"ws://{server.host}:{server.port}/", proxy=None, ping_interval=None, open_timeout=5) as ws:
        time.sleep(1.0)  # several ping intervals and timeouts: nothing may happen
        ws.send("ping-pong works")
        assert ws.recv(timeout=5) == "ping-pong works"


def test_ping_interval_zero_sends_no_ping(serve: Serve) -> None:
    server = serve(Echo(), ws_ping_interval=0, ws_ping_timeout=0.1)
    with WSClient.connect(server.host, server.port) as ws:
        with pytest.raises(TimeoutError):
            ws.recv_frame(timeout=1.0)
        ws.send_text("x")
        assert ws.recv_text() == "x"


# -- flow control ---------------------------------------------------------------------------------

class Firehose:
    """Sends 1 MiB binary messages as fast as send() returns, counting them."""

    def __init__(self) -> None:
        self.sent = 0
        self.error: list[BaseException] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        chunk = b"\x00" * MiB
        try:
            while self.sent < 200:  # a bound, should flow control be missing
                await send({"type": "websocket.send", "bytes": chunk})
                self.sent += 1
        except OSError as exc:
            self.error.append(exc)


def settled(read: Callable[[], int], quiet: float = 0.5, timeout: float = 10.0) -> int:
    """The value of read() once it has stopped changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return value
    raise AssertionError(f"still changing after {timeout} s (at {value})")


def test_app_send_blocks_while_the_client_does_not_read(serve: Serve) -> None:
    app = Firehose()
    server = serve(app, ws_per_message_deflate=False)
    with WSClient.connect(server.host, server.port) as ws:
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        stalled_at = settled(lambda: app.sent)
        assert stalled_at < 64, f"the app sent {stalled_at} MiB to a client that reads nothing"
        for _ in range(stalled_at + 4):  # reading lets the app go on
            frame = ws.recv_frame(timeout=5)
            assert frame.opcode == BINARY and len(frame.payload) == MiB
        wait_until(lambda: app.sent > stalled_at, what="the app to send more once the client reads")


@contextlib.contextmanager
def release_at_exit(event: threading.Event) -> Iterator[None]:
    """A failing test still lets the app go, so the server's teardown is not the failure."""
    try:
        yield
    finally:
        event.set()


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


class SlowReceiver:
    """Accepts and does not receive until released; then counts messages up to a final text "done"."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await wait_thread_event(self.release)
        count = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "done":
                await send({"type": "websocket.send", "text": str(count)})
                continue
            assert len(message["bytes"]) == MiB
            count += 1


def test_client_is_not_read_while_the_app_does_not_receive(serve: Serve) -> None:
    app = SlowReceiver()
    server = serve(app, ws_max_queue=4, ws_per_message_deflate=False)
    frame = build_frame(BINARY, b"\x01" * MiB)  # one masked frame, sent again and again
    offered_limit = 200
    with WSClient.connect(server.host, server.port) as ws, release_at_exit(app.release):
        before = rss()
        ws.sock.setblocking(False)
        sent_bytes, blocked = 0, False
        while sent_bytes < offered_limit * len(frame):
            _, writable, _ = select.select([], [ws.sock], [], 1.0)
            if not writable:
                blocked = True  # nothing could be written for a whole second: the server stopped reading
                break
            try:
                sent_bytes += ws.sock.send(frame[sent_bytes % len(frame):])
            except BlockingIOError:
                continue
        growth = rss() - before
        assert blocked, f"the server read all {sent_bytes // MiB} MiB offered to an app that receives nothing"
        assert growth < 50 * MiB, f"RSS grew by {growth // MiB} MiB"
        # Released, the app gets every message: none was dropped while reading was paused.
        app.release.set()
        ws.sock.setblocking(True)
        ws.sock.settimeout(10)
        ws.sock.sendall(frame[sent_bytes % len(frame):] if sent_bytes % len(frame) else b"")
        ws.sock.sendall(build_frame(TEXT, b"done"))
        complete = -(-sent_bytes // len(frame))
        assert ws.recv_text(timeout=15) == str(complete)


# -- sends after the close --------------------------------------------------------------------------

class SendAfterClose:
    def __init__(self, wait_for_disconnect: bool) -> None:
        self.wait_for_disconnect = wait_for_disconnect
        self.outcome: "queue.Queue[BaseException | None]" = queue.Queue()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        try:
            if self.wait_for_disconnect:
                while (await receive())["type"] != "websocket.disconnect":
                    pass
                await send({"type": "websocket.send", "text": "too late"})
            else:  # never receives: sends until something tells it the client is gone
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    await send({"type": "websocket.send", "text": "tick"})
                    await asyncio.sleep(0.01)
            self.outcome.put(None)
        except BaseException as exc:
            self.outcome.put(exc)
            raise


@pytest.mark.parametrize("how", ["close-frame", "vanish"])
def test_send_after_disconnect_raises_oserror(serve: Serve, how: str) -> None:
    app = SendAfterClose(wait_for_disconnect=True)
    server = serve(app)
    ws = WSClient.connect(server.host, server.port)
    with ws:
        if how == "close-frame":
            assert ws.close_handshake(1000)[0] == 1000
    error = app.outcome.get(timeout=5)
    assert isinstance(error, OSError), repr(error)


def test_app_that_only_sends_learns_the_client_vanished(serve: Serve) -> None:
    app = SendAfterClose(wait_for_disconnect=False)
    server = serve(app)
    ws = WSClient.connect(server.host, server.port)
    assert ws.recv_text() == "tick"
    ws.close()
    error = app.outcome.get(timeout=10)
    assert isinstance(error, OSError), repr(error)


# -- graceful shutdown --------------------------------------------------------------------------------

def test_shutdown_closes_open_websockets_with_1012(serve: Serve) -> None:
    app = Echo()
    server = serve(app, timeout_graceful_shutdown=2)
    with WSClient.connect(server.host, server.port) as ws:
        ws.send_text("before")
        assert ws.recv_text() == "before"
        start = time.monotonic()
        server.server.request_shutdown()
        assert ws.read_close(timeout=5)[0] == 1012
        ws.send_close(1012)
        assert ws.wait_eof(timeout=5) == "eof"
    server.thread.join(5)
    assert not server.thread.is_alive(), "server did not stop"
    assert time.monotonic() - start < 3
    assert app.disconnects.get(timeout=1)["type"] == "websocket.disconnect"
    assert not server.error, server.error


def test_shutdown_waits_for_the_clients_close_frame_before_the_tcp_close(serve: Serve) -> None:
    """RFC 6455 7.1.1: the TCP close follows both close frames. A client still sending when
    the 1012 arrives answers it and reads the FIN afterwards, not a reset before its answer."""
    server = serve(Echo(), timeout_graceful_shutdown=5)
    with WSClient.connect(server.host, server.port) as ws:
        server.server.request_shutdown()
        assert ws.read_close(timeout=5)[0] == 1012
        with pytest.raises(TimeoutError):
            ws.wait_eof(timeout=0.5)  # the server waits for our close frame
        ws.send_close(1012)
        assert ws.wait_eof(timeout=5) == "eof"
    server.thread.join(5)
    assert not server.thread.is_alive()


async def test_shutdown_seen_by_the_asyncio_client(serve: Serve) -> None:
    from websockets.asyncio.client import connect as aconnect

    app = Echo()
    server = serve(app, timeout_graceful_shutdown=2)
    async with aconnect(f"ws://{server.host}:{server.port}/", proxy=None, open_timeout=5, close_timeout=5) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
        server.server.request_shutdown()
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 5)
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1012
    await asyncio.get_running_loop().run_in_executor(None, server.thread.join, 5)
    assert not server.thread.is_alive()


class Stubborn:
    """Ignores the disconnect and never returns (until cancelled)."""

    def __init__(self) -> None:
        self.got: "queue.Queue[str]" = queue.Queue()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        self.got.put((await receive())["type"])
        while True:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("client_answers", [True, False])
def test_stubborn_app_cannot_hold_the_server_past_the_grace(serve: Serve, client_answers: bool) -> None:
    app = Stubborn()
    grace = 1.0
    server = serve(app, timeout_graceful_shutdown=grace)
    with WSClient.connect(server.host, server.port) as ws:
        start = time.monotonic()
        server.server.request_shutdown()
        assert ws.read_close(timeout=5)[0] == 1012
        if client_answers:
            ws.send_close(1012)
        server.thread.join(grace + 5)
        elapsed = time.monotonic() - start
        assert not server.thread.is_alive(), "server did not stop"
        assert elapsed < grace + 2.5, elapsed
        assert app.got.get(timeout=1) == "websocket.disconnect"
        assert ws.wait_eof(timeout=2) in ("eof", "reset")


# -- limits and timers ----------------------------------------------------------------------------------

def test_limit_concurrency_counts_open_websockets(serve: Serve) -> None:
    app = Echo()
    server = serve(app, limit_concurrency=1)
    with WSClient.connect(server.host, server.port) as first:
        first.send_text("hi")
        assert first.recv_text() == "hi"
        with WSClient.open(server.host, server.port) as second:
            second.send_raw(handshake_request())
            assert second.read_response().status == 503
        assert first.close_handshake()[0] == 1000

    def upgrade_again() -> bool:  # once the first has gone, the slot is free again
        with WSClient.open(server.host, server.port) as third:
            third.send_raw(handshake_request())
            return third.read_response_head().status == 101

    wait_until(upgrade_again, what="a 101 after the first websocket closed")


def test_timeout_keep_alive_does_not_close_an_open_websocket(serve: Serve) -> None:
    server = serve(Echo(), timeout_keep_alive=0.2, ws_ping_interval=0)
    with WSClient.connect(server.host, server.port) as ws:
        with pytest.raises(TimeoutError):  # nothing at all arrives, no close, no EOF...
            ws.recv_frame(timeout=1.0)
        ws.send_text("still here")  # ...and the connection works
        assert ws.recv_text() == "still here"


def test_keep_alive_requests_before_the_upgrade(serve: Serve) -> None:
    server = serve(Echo())
    with WSClient.open(server.host, server.port) as ws:
        ws.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = ws.read_response()
        assert first.status == 200 and first.body == b"ok"
        ws.send_raw(handshake_request())
        assert ws.read_response_head().status == 101
        ws.send_text("upgraded on a kept-alive connection")
        assert ws.recv_text() == "upgraded on a kept-alive connection"


# -- access log ------------------------------------------------------------------------------------

def test_access_log_line_when_the_handshake_is_answered_and_debug_line_on_close(serve: Serve) -> None:
    server = serve(Echo())
    with WSClient.connect(server.host, server.port, b"/logme?room=1") as ws:
        # Written when the 101 goes out, not when the connection ends.
        lines = wait_until(lambda: [ln for ln in access_lines(server) if "/logme" in ln], what="the access line")
        assert len(lines) == 1
        assert '"GET /logme?room=1 HTTP/1.1" 101' in lines[0]
        assert lines[0].startswith("127.0.0.1:")
        assert ws.close_handshake(4321, "done")[0] == 4321
        assert ws.wait_eof() == "eof"

    def close_lines() -> list[str]:
        return [r.getMessage() for r in server.logs.records if r.levelno == logging.DEBUG and re.search(r"\b4321\b", r.getMessage())]

    (line,) = wait_until(close_lines, what="the debug close line")
    assert re.search(r"\d(\.\d+)?\s*(ms|s)\b", line), line
    assert len([ln for ln in access_lines(server) if "/logme" in ln]) == 1  # still one access line


def test_access_log_off_for_websockets_too(serve: Serve) -> None:
    server = serve(Echo(), access_log=False)
    with ws_connect(server, "/quiet") as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    server.stop()
    assert not [ln for ln in access_lines(server) if "/quiet" in ln]
