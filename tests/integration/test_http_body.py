"""Request bodies and flow control, seen from the app and from a raw client.

- bodies arrive as several http.request messages with more_body (Content-Length and chunked);
- read backpressure: a big upload to an app that has not started reading stalls the client
  instead of filling server memory (observed as the size of the app's first receive());
- Expect: 100-continue is answered only when the app asks for the body;
- http.disconnect when the client goes away, and after the response is complete;
- write backpressure: an app streaming to a client that does not read is held in send().

Stalls are detected by observing that progress stopped (bounded polls), never by a speed threshold.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import select
import socket
import threading
import time
from typing import Any, Callable, Optional

import httpx
import pytest

from tests.support import RawClient, RunningServer, ok_app

Serve = Callable[..., RunningServer]
MiB = 1024 * 1024


async def wait_thread_event(event: threading.Event, timeout: float = 20.0) -> None:
    """Wait inside the server's loop for a test-side event (polls: never blocks the loop)."""
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("test never released the app")
        await asyncio.sleep(0.002)


async def respond(send: Any, data: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"%d" % len(data))]})
    await send({"type": "http.response.body", "body": data})


def recording_echo(messages: "queue.Queue[dict[str, Any]]", calls: Optional[list[str]] = None) -> Any:
    """Echo app that reports every message it receives to the test as it receives it."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if calls is not None:
            calls.append(scope["path"])
        data = b""
        while True:
            message = await receive()
            messages.put(message)
            if message["type"] != "http.request":
                return
            data += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await respond(send, data)

    return app


def collect_until(messages: "queue.Queue[dict[str, Any]]", want: bytes) -> list[dict[str, Any]]:
    """Messages until their bodies add up to ``want`` (bounded by a timeout per message)."""
    got: list[dict[str, Any]] = []
    data = b""
    while data != want:
        message = messages.get(timeout=5)
        assert message["type"] == "http.request", message
        got.append(message)
        data += message.get("body", b"")
        assert want.startswith(data), (data, want)
    return got


def test_get_has_one_empty_request_message(serve: Serve) -> None:
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo(messages))
    with server.raw() as client:
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().status == 200
    message = messages.get(timeout=5)
    assert message["type"] == "http.request"
    assert message.get("body", b"") == b""
    assert message.get("more_body", False) is False
    assert messages.empty()


def test_content_length_body_streamed_in_pieces(serve: Serve) -> None:
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo(messages))
    with server.raw() as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc")
        first = collect_until(messages, b"abc")
        assert all(m.get("more_body") is True for m in first)
        assert all(type(m.get("body", b"")) is bytes for m in first)
        client.send(b"def")
        second = collect_until(messages, b"def")
        assert all(m.get("more_body") is True for m in second)
        client.send(b"ghi")
        third = collect_until(messages, b"ghi")
        if third[-1].get("more_body"):  # a server may close the body with an empty message
            last = messages.get(timeout=5)
            assert last["type"] == "http.request" and not last.get("body") and not last.get("more_body")
        response = client.read_response()
        assert response.status == 200 and response.body == b"abcdefghi"


def test_chunked_upload_streamed_in_pieces(serve: Serve) -> None:
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo(messages))
    with server.raw() as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        first = collect_until(messages, b"abc")
        assert all(m.get("more_body") is True for m in first)
        client.send(b"4;name=value\r\ndefg\r\n")
        second = collect_until(messages, b"defg")
        assert all(m.get("more_body") is True for m in second)
        client.send(b"0\r\nX-Trailer: yes\r\n\r\n")
        last = messages.get(timeout=5)
        assert last["type"] == "http.request" and last.get("body", b"") == b"" and not last.get("more_body")
        response = client.read_response()
        assert response.status == 200 and response.body == b"abcdefg"


def test_chunked_upload_with_httpx(serve: Serve) -> None:
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo(messages))
    parts = [bytes([65 + i]) * (1000 * (i + 1)) for i in range(10)]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post("/up", content=iter(parts))  # an iterator: sent chunked
    assert response.status_code == 200
    assert response.content == b"".join(parts)


def test_large_upload_to_slow_app_is_not_buffered(serve: Serve) -> None:
    """The server stops reading while the app is not consuming: the client's send stalls, and
    what the app finally gets in one receive() is bounded by the server's buffer, not the upload."""
    total = 32 * MiB
    payload = memoryview(bytes(range(256)) * (total // 256))
    arrived, release = threading.Event(), threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        arrived.set()
        await wait_thread_event(release)
        sizes: list[int] = []
        digest = hashlib.sha256()
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            sizes.append(len(message["body"]))
            digest.update(message["body"])
            if not message.get("more_body"):
                break
        out = json.dumps({"total": sum(sizes), "first": sizes[0], "max": max(sizes), "sha": digest.hexdigest()})
        await respond(send, out.encode())

    server = serve(app)
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % total)
        assert arrived.wait(5)
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 20
        while sent < total and time.monotonic() < deadline:
            try:
                sent += sock.send(payload[sent : sent + MiB])
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], 0.5)
                if not writable:
                    break  # nothing drained for a while: the server stopped reading
        assert sent < total, "the server read the whole upload while the app was not consuming it"
        release.set()
        sock.settimeout(10)
        sock.sendall(payload[sent:])
        client = RawClient(sock)
        response = client.read_response()
    finally:
        release.set()
        sock.close()
    assert response.status == 200
    result = json.loads(response.body)
    assert result["total"] == total
    assert result["sha"] == hashlib.sha256(payload).hexdigest()
    # What piled up while the app slept is bounded (a few hundred KiB by design; 4 MiB is generous).
    assert result["first"] <= 4 * MiB, result
    assert result["max"] <= 4 * MiB, result


def test_expect_100_continue_sent_when_app_reads(serve: Serve) -> None:
    arrived, release = threading.Event(), threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        arrived.set()
        await wait_thread_event(release)
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            if not message.get("more_body"):
                break
        await respond(send, b"got:" + data)

    server = serve(app)
    with server.raw() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        try:
            assert arrived.wait(5)
            client.sock.setblocking(False)
            with pytest.raises(BlockingIOError):  # nothing yet: the app has not asked for the body
                client.sock.recv(1024)
        finally:
            client.sock.settimeout(5)
            release.set()
        status, _, head = client.read_head()
        assert status == 100
        assert head.startswith(b"HTTP/1.1 100 Continue\r\n")
        client.send(b"hello")
        response = client.read_response()
        assert response.status == 200 and response.body == b"got:hello"
        # The connection stays usable.
        client.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok")
        assert client.read_response().body == b"got:ok"


def test_expect_100_continue_app_answers_without_reading(serve: Serve) -> None:
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        calls.append(scope["path"])
        await respond(send, b"rejected", 413 if scope["path"] == "/upload" else 200)

    server = serve(app)
    sneaky = b"GET /evil HTTP/1.1\r\nHost: h\r\n\r\n"
    with server.raw() as client:
        client.send(
            b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(sneaky)
        )
        status, headers, head = client.read_head()
        assert status == 413, head  # no 100 Continue: the app never asked for the body
        length = int(dict(headers)[b"content-length"])
        assert client._read_exact(length) == b"rejected"
        closing = b"close" in dict(headers).get(b"connection", b"").lower()
        # A client that sends the body anyway: it must never be parsed as a request.
        try:
            client.send(sneaky + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        except OSError:
            assert closing
        if closing:
            assert client.buffer == b"" and client.is_closed()
        else:
            response = client.read_response()
            assert response.status == 200
    assert "/evil" not in calls


def test_unread_body_is_never_parsed_as_requests(serve: Serve) -> None:
    """The app answers without reading a large body; the rest is drained (or the connection closed)."""
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        calls.append(scope["path"])
        await respond(send, b"answered:" + scope["path"].encode())

    server = serve(app)
    body = b"GET /evil HTTP/1.1\r\nHost: h\r\n\r\n" * 20000  # ~600 KiB, more than any read buffer
    with server.raw(timeout=10) as client:
        client.send(b"POST /first HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body))
        sender = threading.Thread(target=lambda: _send_quietly(client, body + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"))
        sender.start()
        try:
            first = client.read_response()
            assert first.status == 200 and first.body == b"answered:/first"
            if b"close" in (first.header(b"connection") or b"").lower():
                assert client.buffer == b""
            else:
                second = client.read_response()
                assert second.body == b"answered:/next"
        finally:
            sender.join(10)
    assert "/evil" not in calls


def _send_quietly(client: RawClient, data: bytes) -> None:
    try:
        client.sock.sendall(data)
    except OSError:  # the server may close after answering; that is allowed
        pass


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_disconnect_mid_body(serve: Serve, how: str) -> None:
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo(messages), timeout_graceful_shutdown=1)
    client = server.raw()
    client.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789")
    collect_until(messages, b"0123456789")
    if how == "rst":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()
    assert messages.get(timeout=5) == {"type": "http.disconnect"}


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_disconnect_while_app_waits_long_poll(serve: Serve, how: str) -> None:
    """A long-poll app (request fully read, waiting on receive()) learns the client left."""
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo_then_wait(messages), timeout_graceful_shutdown=1)
    client = server.raw()
    client.send(b"GET /poll HTTP/1.1\r\nHost: h\r\n\r\n")
    first = messages.get(timeout=5)
    assert first["type"] == "http.request" and not first.get("more_body")
    if how == "rst":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()
    assert messages.get(timeout=5) == {"type": "http.disconnect"}


def recording_echo_then_wait(messages: "queue.Queue[dict[str, Any]]") -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        messages.put(await receive())
        messages.put(await asyncio.wait_for(receive(), 20))  # blocks until the client goes away

    return app


def test_disconnect_after_response_complete(serve: Serve) -> None:
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await respond(send, b"done")
        messages.put(await asyncio.wait_for(receive(), 10))

    server = serve(app)
    with server.raw() as client:
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().body == b"done"
        # The client is still connected (keep-alive), yet this request's cycle is over.
        assert messages.get(timeout=5) == {"type": "http.disconnect"}
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().body == b"done"
        assert messages.get(timeout=5) == {"type": "http.disconnect"}


def abandon_download(serve: Serve, headers: list[tuple[bytes, bytes]], **options: Any) -> tuple[RunningServer, object]:
    """An app streams an endless response; the client reads the head, then resets the
    connection. Returns the server and what the app's send() loop ended with."""
    outcome: "queue.Queue[object]" = queue.Queue()
    first_sent = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            first_sent.set()
            for _ in range(100000):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                await asyncio.sleep(0)
            outcome.put("completed")
        except BaseException as exc:
            outcome.put(exc)
            raise

    server = serve(app, **options)
    client = server.raw()
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    client.read_head()
    assert first_sent.wait(5)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()
    return server, outcome.get(timeout=10)


def test_send_after_disconnect_raises_oserror(serve: Serve) -> None:
    """ASGI 2.4: send() on a gone client raises an OSError subclass; the app is not stuck."""
    _, result = abandon_download(serve, [], timeout_graceful_shutdown=1)
    assert isinstance(result, OSError), result


def test_unread_bodies_that_arrived_whole_do_not_stall_the_connection(serve: Serve) -> None:
    """An app that answers without reading a body that had already arrived whole (a 401 to an
    upload): the server drops those bytes. It used to keep counting them as buffered, so after
    256 KiB of them the connection stopped reading, and the next request hung until the
    keep-alive sweep closed the connection under it (found with WSGI uploads under load)."""

    server = serve(ok_app, timeout_keep_alive=30)
    body = b"u" * (64 * 1024)
    post = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with server.raw(timeout=10) as client:
        client.send(post * 8)  # pipelined: 512 KiB of bodies, twice the read-pause mark
        for _ in range(8):
            assert client.read_response().body == b"ok"
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().body == b"ok"


def test_client_leaving_a_download_is_not_logged_as_an_error(serve: Serve) -> None:
    """A client that abandons a download with a declared length is routine, not an app error:
    the app gets its OSError, and the log has no ERROR line (it said "Response shorter than its
    Content-Length", once per abandoned download)."""
    server, result = abandon_download(serve, [(b"content-length", b"%d" % (1 << 40))])
    assert isinstance(result, OSError), result
    client = server.raw()  # the server is fine: a new request is answered
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    client.read_head()
    client.close()
    errors = [r.getMessage() for r in server.logs.records if r.levelno >= logging.ERROR]
    assert errors == []


def wait_until_stalled(progress: Callable[[], int], done: threading.Event, timeout: float = 15.0) -> int:
    """Poll ``progress`` until it stops moving for a while (or ``done``); returns the last value."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline and not done.is_set():
        value = progress()
        still = still + 1 if value == last else 0
        last = value
        if still >= 10:
            break
        time.sleep(0.05)
    return progress()


def test_slow_reader_holds_the_app_in_send(serve: Serve) -> None:
    total, piece = 64 * MiB, 64 * 1024
    pushed = [0]
    done = threading.Event()
    block = bytes(range(256)) * (piece // 256)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % total)]})
        for i in range(total // piece):
            await send({"type": "http.response.body", "body": block, "more_body": i < total // piece - 1})
            pushed[0] += piece
        done.set()

    server = serve(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # no receive autotuning
    sock.settimeout(10)
    sock.connect((server.host, server.port))
    client = RawClient(sock)
    try:
        client.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        stalled_at = wait_until_stalled(lambda: pushed[0], done)
        assert not done.is_set(), "the app pushed 64 MiB into a client that reads nothing"
        assert stalled_at < 16 * MiB, stalled_at
        status, headers, _ = client.read_head()
        assert status == 200 and dict(headers)[b"content-length"] == b"%d" % total
        received = len(client.buffer)
        digest = hashlib.sha256(client.buffer)
        client.buffer = b""
        while received < total:
            chunk = sock.recv(1024 * 1024)
            assert chunk, f"EOF after {received} of {total} bytes"
            digest.update(chunk)
            received += len(chunk)
        assert received == total
        assert digest.hexdigest() == hashlib.sha256(block * (total // piece)).hexdigest()
        assert done.wait(10)
    finally:
        sock.close()


def test_expect_100_continue_ignored_on_http10(serve: Serve) -> None:
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo(messages))
    with server.raw() as client:
        client.send(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
        status, _, head = client.read_head()
        assert status == 200, head  # HTTP/1.0 clients do not understand interim responses
        assert client._read_exact(3) == b"abc"


def test_expect_100_continue_when_body_already_sent(serve: Serve) -> None:
    """A client that stopped waiting and sent the body: the final response is still correct."""
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    server = serve(recording_echo(messages))
    with server.raw() as client:
        client.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
        response = client.read_response()  # skips an interim 100 if one was sent
        assert response.status == 200 and response.body == b"abc"
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().status == 200


@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket"])
def test_upgrade_offer_is_ignored_and_body_delivered(serve: Serve, upgrade: bytes) -> None:
    """An Upgrade the server does not take (h2c; websocket under --ws none) is ignored: the
    request (and its body) is plain HTTP."""
    messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
    calls: list[str] = []
    server = serve(recording_echo(messages, calls), ws="none")
    with server.raw() as client:
        client.send(
            b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: " + upgrade
            + b"\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        response = client.read_response()
        assert response.status == 200 and response.body == b"hello"  # never a 101
        second = client.read_response()
        assert second.status == 200
    assert calls == ["/up", "/next"]


def test_websocket_upgrade_on_a_post_is_refused(serve: Serve) -> None:
    """With WebSockets on, the same POST is an invalid handshake: 400, the app is not called."""
    calls: list[str] = []
    server = serve(recording_echo(queue.Queue(), calls))
    with server.raw() as client:
        client.send(
            b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Content-Length: 5\r\n\r\nhello"
        )
        response = client.read_response()
        assert response.status == 400 and b"GET" in response.body
        assert client.is_closed()
    assert calls == []
