"""The connection core, driven byte-for-byte through a fake transport (no sockets, no timers).

These pin ordering and flow-control decisions that are hard to observe from a real client:
when reading pauses and resumes, that nothing is written before the app asks for the body,
and what exactly is on the wire after each kind of failure.
"""
from __future__ import annotations

import asyncio
import contextvars
import socket
from typing import Any, Awaitable, Callable

import pytest

from asgiserve.config import Config
from asgiserve.http.protocol import BODY_HIGH_WATER, HttpProtocol
from asgiserve.server import Server, ServerState

App = Callable[..., Awaitable[None]]


class FakeSocket:
    family = socket.AF_INET

    def setsockopt(self, *args: Any) -> None:
        pass


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.fully_closed = False  # close() or abort(), not just write_eof()

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def close(self) -> None:
        self.closed = True
        self.fully_closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True  # the server's side is done: nothing more may be written

    def abort(self) -> None:
        self.closed = self.fully_closed = True
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000), "socket": FakeSocket()}
        return info.get(name, default)

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def connect(app: App, http_impl: str, **options: Any) -> tuple[HttpProtocol, FakeTransport]:
    config = Config(app=app, http=http_impl, proxy_headers=False, access_log=False, **options)
    state = ServerState(Server(config), config, app, asyncio.get_running_loop())
    proto = HttpProtocol(state)
    transport = FakeTransport()
    proto.connection_made(transport)
    return proto, transport


def responses(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Split Content-Length-framed responses into (head, body) pairs."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        out.append((head, rest[:length]))
        raw = rest[length:]
    return out


async def echo_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode() + b":" + body})


async def test_pipelined_requests_answered_in_order(http_impl: str) -> None:
    proto, transport = connect(echo_path, http_impl)
    proto.data_received(
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    await settle()
    assert [body for _, body in responses(transport.take())] == [b"/1:", b"/2:abc", b"/3:"]
    assert not transport.closed
    # Each request's task leaves the server's registry as it ends (nothing accumulates).
    assert proto.state.tasks == set() and proto.state.active_requests == 0


async def test_parse_error_answered_after_earlier_pipelined_requests(http_impl: str) -> None:
    calls = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await echo_path(scope, receive, send)

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nBAD\x00 / HTTP/1.1\r\n\r\n")
    await settle()
    got = responses(transport.take())
    assert [head.split(b"\r\n")[0] for head, _ in got] == [
        b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"
    ]
    assert calls == ["/1", "/2"]
    assert transport.closed


async def test_reading_pauses_until_the_app_consumes_the_body(http_impl: str) -> None:
    release = asyncio.Event()
    received = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        while True:
            message = await receive()
            received.append(len(message["body"]))
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    proto, transport = connect(app, http_impl)
    size = BODY_HIGH_WATER * 3
    proto.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
    chunk = b"x" * 65536
    sent = 0
    while transport.reading and sent < size:
        proto.data_received(chunk)
        sent += len(chunk)
    assert not transport.reading, "reading must pause while the app has not consumed the body"
    assert sent < size
    release.set()
    await settle()
    assert transport.reading, "reading resumes once the app drained the buffer"
    while sent < size:
        proto.data_received(chunk)
        sent += len(chunk)
        await settle()
    await settle()
    assert sum(received) == size
    assert transport.take().startswith(b"HTTP/1.1 204 No Content\r\n")


async def test_100_continue_only_when_the_app_reads(http_impl: str) -> None:
    may_read = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await may_read.wait()
        await echo_path(scope, receive, send)

    proto, transport = connect(app, http_impl)
    proto.data_received(b"POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    await settle()
    assert transport.take() == b"", "nothing may be sent before the app asks for the body"
    may_read.set()
    await settle()
    assert transport.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    proto.data_received(b"hi")
    await settle()
    assert responses(transport.take())[0][1] == b"/u:hi"


async def test_100_continue_not_sent_when_the_app_answers_without_reading(http_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too big"})

    proto, transport = connect(app, http_impl)
    proto.data_received(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 99999\r\n\r\n")
    await settle()
    out = transport.take()
    assert b"100 Continue" not in out
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in out.lower()
    assert transport.closed, "the unread body would be misread as the next request"


async def test_head_response_has_headers_but_no_body(http_impl: str) -> None:
    proto, transport = connect(echo_path, http_impl)
    proto.data_received(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    raw = transport.take()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"content-length: 3" in head  # what a GET would carry ("/h:")
    assert rest.startswith(b"HTTP/1.1 200 OK"), "no body bytes after a HEAD response"


async def test_http10_streaming_is_close_delimited(http_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET / HTTP/1.0\r\n\r\n")
    await settle()
    raw = transport.take()
    assert b"transfer-encoding" not in raw.lower()
    assert raw.endswith(b"\r\n\r\nab")
    assert transport.closed


async def test_chunked_streaming_on_http11(http_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    raw = transport.take()
    assert b"transfer-encoding: chunked\r\n" in raw
    assert raw.endswith(b"\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n")
    assert not transport.closed


async def test_exception_before_start_is_500(http_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom")

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert transport.take().startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert transport.closed


async def test_exception_mid_stream_closes_without_a_fake_end(http_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom")

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    raw = transport.take()
    assert raw.endswith(b"4\r\npart\r\n"), "no terminating 0-chunk: the client must see a truncated body"
    assert transport.aborted, "a truncated response must not linger waiting to flush"


async def test_body_longer_than_content_length_never_reaches_the_wire(http_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cdef"})

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert transport.take().endswith(b"\r\n\r\nab")
    assert transport.closed


async def test_connection_close_request_stops_the_pipeline(http_impl: str) -> None:
    proto, transport = connect(echo_path, http_impl)
    proto.data_received(
        b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    await settle()
    got = responses(transport.take())
    assert [body for _, body in got] == [b"/1:"]
    assert b"connection: close" in got[0][0]
    assert transport.closed


async def test_half_closed_client_still_gets_its_response(http_impl: str) -> None:
    proto, transport = connect(echo_path, http_impl)
    proto.data_received(b"GET /x HTTP/1.0\r\n\r\n")
    assert proto.eof_received() is True
    await settle()
    assert responses(transport.take())[0][1] == b"/x:"
    assert transport.closed


async def test_contextvars_do_not_leak_between_requests(http_impl: str) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(var.get())
        var.set(scope["path"])
        await echo_path(scope, receive, send)

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert seen == ["unset", "unset"]


async def test_disconnect_delivered_to_a_waiting_app(http_impl: str) -> None:
    messages = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        messages.append(await receive())
        messages.append(await receive())

    proto, transport = connect(app, http_impl)
    proto.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
    await settle()
    proto.connection_lost(None)
    await settle()
    assert messages == [
        {"type": "http.request", "body": b"12345", "more_body": True},
        {"type": "http.disconnect"},
    ]


async def test_concurrent_receivers_one_cancelled(http_impl: str) -> None:
    """A cancelled receive() (e.g. a timed-out disconnect probe) must not break another waiting one."""
    results = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        first = await receive()
        assert first["more_body"]
        probe = asyncio.ensure_future(receive())
        listener = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        probe.cancel()
        results.append(await listener)

    proto, transport = connect(app, http_impl)
    proto.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    await settle()
    proto.data_received(b"cd")
    await settle()
    assert results == [{"type": "http.request", "body": b"cd", "more_body": False}]


async def test_zerocopysend_streams_a_file_range(http_impl: str, tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 2048)  # 512 KiB: several pieces

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.zerocopysend" in scope["extensions"]
        with open(path, "rb") as f:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"300000")]})
            await send({"type": "http.response.zerocopysend", "file": f, "offset": 10, "count": 300000})

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    head, body = responses(transport.take())[0]
    assert body == path.read_bytes()[10:300010]
    assert not transport.closed


async def test_fin_tells_a_long_poll_app_but_the_response_still_goes_out(http_impl: str) -> None:
    """A FIN after a complete request: receive() reports http.disconnect (the client may have left),
    yet an app that answers anyway reaches a client that only half-closed."""
    seen = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    proto, transport = connect(app, http_impl)
    proto.data_received(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert len(seen) == 1
    assert proto.eof_received() is True
    await settle()
    assert seen[1] == {"type": "http.disconnect"}
    assert responses(transport.take())[0][1] == b"late"
    assert transport.closed


async def test_date_is_not_formatted_per_request(http_impl: str, monkeypatch: Any) -> None:
    """The Date line is computed by the server's ticker, never per response."""
    import asgiserve.http.response as response_module

    proto, transport = connect(echo_path, http_impl)
    calls = []
    real = response_module.formatdate
    monkeypatch.setattr(response_module, "formatdate", lambda **kw: calls.append(1) or real(**kw))
    for _ in range(50):
        proto.data_received(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        await settle()
    heads = [head for head, _ in responses(transport.take())]
    assert len(heads) == 50 and calls == []
    assert len({line for head in heads for line in head.split(b"\r\n") if line.startswith(b"date: ")}) == 1
    proto.state.refresh_headers()  # what the ticker does
    assert calls == [1]


async def test_closing_lingers_reading_until_the_client_closes(http_impl: str, monkeypatch: Any) -> None:
    import asgiserve.http.protocol as protocol_module

    monkeypatch.setattr(protocol_module, "LINGER_READ", 0.05)
    proto, transport = connect(echo_path, http_impl)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 400 ")
    # Half-closed: the FIN goes out, input is still read and dropped.
    assert transport.closed and not transport.fully_closed and transport.reading
    proto.data_received(b"GET /more HTTP/1.1\r\nHost: a\r\n\r\n" * 100)
    assert transport.take() == b""
    assert proto.eof_received() is False  # the client closed too: the transport may close
    # A client that never closes is cut off after LINGER_READ.
    proto2, transport2 = connect(echo_path, http_impl)
    proto2.data_received(b"BAD\r\n\r\n")
    assert transport2.take().startswith(b"HTTP/1.1 400 ") and not transport2.fully_closed
    await asyncio.sleep(0.1)
    assert transport2.fully_closed


async def test_closing_after_the_client_half_closed_does_not_linger(http_impl: str) -> None:
    proto, transport = connect(echo_path, http_impl)
    proto.data_received(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert proto.eof_received() is True  # answer what was asked, then close
    await settle()
    assert responses(transport.take())[0][1] == b"/x:"
    assert transport.fully_closed
