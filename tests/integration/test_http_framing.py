"""Response framing on the wire: Content-Length, chunked, close-delimited, bodiless responses,
apps that lie about their length, and the headers the server adds (Date, Server, --header).

Every response is read as raw bytes and its framing is checked strictly: a response followed by
a pipelined request must leave the connection exactly at the start of the next response.
"""
from __future__ import annotations

import asyncio
import email.utils
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Callable, Optional

import pytest

from tests.support import RawClient, RawResponse, RunningServer

Serve = Callable[..., RunningServer]

IMF_FIXDATE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    rb"\d{2}:\d{2}:\d{2} GMT"
)


def start(status: int = 200, headers: Optional[list[tuple[bytes, bytes]]] = None) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes = b"", more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


BIG_PIECES = [bytes([65 + i]) * (100_000 + i) for i in range(3)]  # over the server's 16 KiB list-write size


async def framing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One route per framing case; the path picks it."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    while (await receive()).get("more_body"):
        pass
    if path == "/cl":  # app-declared Content-Length, body in two pieces
        await send(start(200, [(b"content-type", b"text/plain"), (b"content-length", b"5")]))
        await send(body(b"he", True))
        await send(body(b"llo"))
    elif path == "/stream":  # no length: the server must frame it
        await send(start(200, [(b"content-type", b"text/plain")]))
        for piece in (b"abc", b"", b"defg", b"h"):
            await send(body(piece, True))
        await send(body(b""))
    elif path == "/stream-last":  # the last piece carries data
        await send(start(200))
        await send(body(b"x" * 10, True))
        await send(body(b"y" * 20))
    elif path == "/big-stream":  # large pieces: written as a list of buffers, framing unchanged
        await send(start(200))
        for piece in BIG_PIECES:
            await send(body(piece, True))
        await send(body(BIG_PIECES[0]))
    elif path == "/big-single":
        await send(start(200))
        await send(body(BIG_PIECES[1]))
    elif path == "/single":
        await send(start(200, [(b"content-type", b"text/plain")]))
        await send(body(b"hello world"))
    elif path == "/empty":
        await send(start(200))
        await send(body(b""))
    elif path in ("/204", "/304"):
        await send(start(int(path[1:]), [(b"x-kind", b"bodiless")]))
        await send(body(b""))
    elif path in ("/204-with-body", "/304-with-body"):
        await send(start(int(path[1:4]), [(b"x-kind", b"bodiless")]))
        await send(body(b"MUST-NOT-APPEAR", True))
        await send(body(b"NEITHER"))
    elif path == "/304-with-cl":
        await send(start(304, [(b"content-length", b"42"), (b"etag", b'"v1"')]))
        await send(body(b""))
    elif path == "/too-long-one-message":
        await send(start(200, [(b"content-length", b"3")]))
        await send(body(b"abcdefgh"))
    elif path == "/too-long-later":
        await send(start(200, [(b"content-length", b"5")]))
        await send(body(b"abc", True))
        await send(body(b"def!!!"))
    elif path == "/too-short":
        await send(start(200, [(b"content-length", b"10")]))
        await send(body(b"abc"))
    elif path == "/own-date-server":
        await send(start(200, [(b"date", b"Mon, 01 Jan 2001 00:00:00 GMT"), (b"server", b"myapp/1")]))
        await send(body(b"ok"))
    elif path == "/app-chunked":  # the app claims to frame it; the server must not double-chunk
        await send(start(200, [(b"transfer-encoding", b"chunked")]))
        await send(body(b"abc", True))
        await send(body(b"def"))
    elif path == "/bad-cl":
        await send(start(200, [(b"content-length", b"abc")]))
        await send(body(b"abc"))
    elif path == "/head-aware":  # a hand-written app that skips the body for HEAD
        await send(start(200, [(b"content-type", b"text/plain")]))
        await send(body(b"" if scope["method"] == "HEAD" else b"12345"))
    elif path == "/status/299":
        await send(start(299))
        await send(body(b"odd"))
    else:
        await send(start(404))
        await send(body(b"not found"))


def req(path: str, method: str = "GET", version: str = "1.1", extra: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: h\r\n".encode() + extra + b"\r\n"


def read_chunked_strict(client: RawClient) -> bytes:
    """Decode a chunked body, failing on any deviation from RFC 9112 chunked syntax."""
    out = b""
    while True:
        line = client._read_line()
        assert re.fullmatch(rb"[0-9a-fA-F]+", line), f"bad chunk-size line {line!r}"
        size = int(line, 16)
        if size == 0:
            assert client._read_line() == b"", "unexpected trailer"
            return out
        out += client._read_exact(size)
        assert client._read_exact(2) == b"\r\n"


def get(client: RawClient, path: str, method: str = "GET", version: str = "1.1", extra: bytes = b"") -> RawResponse:
    client.send(req(path, method, version, extra))
    return client.read_response(method.encode())


def assert_next_response_clean(client: RawClient) -> None:
    """After a response, the connection must carry exactly the next one (no stray body bytes)."""
    client.send(req("/single"))
    response = client.read_response()
    assert response.status == 200 and response.body == b"hello world", response


def test_app_content_length_honoured(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        response = get(client, "/cl")
        assert response.status == 200
        assert response.header_list(b"content-length") == [b"5"]
        assert response.header(b"transfer-encoding") is None
        assert response.body == b"hello"
        assert response.header(b"connection") != b"close"
        assert_next_response_clean(client)


def test_streaming_is_chunked_on_http11(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/stream"))
        status, headers, _ = client.read_head()
        hdrs = dict(headers)
        assert status == 200
        assert hdrs.get(b"transfer-encoding") == b"chunked"
        assert b"content-length" not in hdrs
        # An empty more_body=True message must not produce a premature 0-size chunk.
        assert read_chunked_strict(client) == b"abcdefgh"
        assert_next_response_clean(client)
        client.send(req("/stream-last"))
        status, headers, _ = client.read_head()
        assert dict(headers).get(b"transfer-encoding") == b"chunked"
        assert read_chunked_strict(client) == b"x" * 10 + b"y" * 20
        assert_next_response_clean(client)


def test_large_bodies_framed_exactly(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/big-stream"))
        status, headers, _ = client.read_head()
        assert status == 200 and dict(headers).get(b"transfer-encoding") == b"chunked"
        assert read_chunked_strict(client) == b"".join(BIG_PIECES) + BIG_PIECES[0]
        response = get(client, "/big-single")
        assert response.header(b"content-length") == str(len(BIG_PIECES[1])).encode()
        assert response.body == BIG_PIECES[1]
        assert_next_response_clean(client)
    with server.raw() as client:
        client.send(req("/big-stream", version="1.0"))
        status, headers, _ = client.read_head()
        assert b"transfer-encoding" not in dict(headers)
        assert client.read_until_close() == b"".join(BIG_PIECES) + BIG_PIECES[0]


def test_streaming_is_close_delimited_on_http10(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/stream", version="1.0"))
        status, headers, head = client.read_head()
        hdrs = dict(headers)
        assert status == 200
        assert head.startswith(b"HTTP/1.")
        assert b"transfer-encoding" not in hdrs  # HTTP/1.0 clients do not know chunked
        assert b"content-length" not in hdrs
        assert client.read_until_close() == b"abcdefgh"


def test_streaming_http10_keep_alive_still_close_delimited(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/stream", version="1.0", extra=b"Connection: keep-alive\r\n"))
        status, headers, _ = client.read_head()
        hdrs = dict(headers)
        assert status == 200
        assert b"transfer-encoding" not in hdrs
        if b"content-length" in hdrs:  # a server may buffer to compute it; then keep-alive is fine
            assert client._read_exact(int(hdrs[b"content-length"])) == b"abcdefgh"
        else:
            assert hdrs.get(b"connection", b"").lower() != b"keep-alive"
            assert client.read_until_close() == b"abcdefgh"


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_single_body_framing(serve: Serve, version: str) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/single", version=version))
        status, headers, _ = client.read_head()
        hdrs = dict(headers)
        assert status == 200
        if b"content-length" in hdrs:
            assert b"transfer-encoding" not in hdrs
            assert hdrs[b"content-length"] == b"11"
            assert client._read_exact(11) == b"hello world"
        elif version == "1.1":
            assert hdrs.get(b"transfer-encoding") == b"chunked"
            assert read_chunked_strict(client) == b"hello world"
        else:
            assert client.read_until_close() == b"hello world"


def test_empty_body(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/empty"))
        status, headers, _ = client.read_head()
        hdrs = dict(headers)
        assert status == 200
        if b"content-length" in hdrs:
            assert hdrs[b"content-length"] == b"0"
        else:
            assert hdrs.get(b"transfer-encoding") == b"chunked"
            assert read_chunked_strict(client) == b""
        assert_next_response_clean(client)


@pytest.mark.parametrize("path", ["/cl", "/stream", "/single", "/empty", "/404"])
def test_head_has_no_body_and_same_headers(serve: Serve, path: str) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        get_response = get(client, path)
        head_response = get(client, path, method="HEAD")
        assert head_response.status == get_response.status
        assert client.buffer == b""  # read_response read no body for HEAD; nothing stray either

        def comparable(r: RawResponse) -> list[tuple[bytes, bytes]]:
            skip = {b"date", b"transfer-encoding", b"content-length"}
            return [(k, v) for k, v in r.headers if k not in skip]

        assert comparable(head_response) == comparable(get_response)
        if get_response.header(b"content-length") is not None and head_response.header(b"content-length"):
            assert head_response.header(b"content-length") == get_response.header(b"content-length")
        if get_response.header(b"content-length") is None:
            # A streamed GET's length is unknown: HEAD must not claim the first piece's length.
            assert head_response.header(b"content-length") is None
        # If any body bytes had been written for HEAD, this next response would be garbage.
        assert_next_response_clean(client)


@pytest.mark.parametrize("path", ["/204", "/304", "/204-with-body", "/304-with-body"])
def test_bodiless_statuses(serve: Serve, path: str) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req(path) + req("/single"))
        status, headers, _ = client.read_head()
        hdrs = dict(headers)
        assert status == int(path[1:4])
        assert hdrs[b"x-kind"] == b"bodiless"
        assert b"transfer-encoding" not in hdrs
        assert b"content-length" not in hdrs
        # The next bytes on the wire must be the pipelined response's status line.
        response = client.read_response()
        assert response.status == 200 and response.body == b"hello world"
        assert b"MUST-NOT-APPEAR" not in response.head and b"NEITHER" not in response.head


def test_304_keeps_app_content_length(serve: Serve) -> None:
    """A 304 may carry the Content-Length of the representation; still no body bytes follow."""
    server = serve(framing_app)
    with server.raw() as client:
        response = get(client, "/304-with-cl")
        assert response.status == 304
        assert response.header(b"etag") == b'"v1"'
        assert response.header_list(b"content-length") in ([], [b"42"])
        assert response.header(b"transfer-encoding") is None
        assert_next_response_clean(client)


def read_all(client: RawClient) -> bytes:
    data = client.buffer + client.read_until_close()
    client.buffer = b""
    return data


@pytest.mark.parametrize("path,declared", [("/too-long-one-message", 3), ("/too-long-later", 5)])
def test_more_bytes_than_content_length(serve: Serve, path: str, declared: int) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        # A pipelined request behind it: extra body bytes must never be read as its response.
        client.send(req(path) + req("/single"))
        data = read_all(client)
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data
    status = int(head.split(b" ", 2)[1])
    if status == 200:
        assert b"content-length: %d" % declared in head.lower()
        assert len(rest) <= declared, data
    else:
        assert status == 500
    assert b"!!!" not in data and b"defgh" not in data
    assert b"hello world" not in data  # the connection was closed, not reused
    assert "Content-Length" in server.logs.text() or "content-length" in server.logs.text().lower()


def test_fewer_bytes_than_content_length(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/too-short") + req("/single"))
        data = read_all(client)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 10" in head.lower()
    assert rest == b"abc"  # then EOF: the client can tell the response is truncated
    assert "shorter" in server.logs.text().lower() or "content-length" in server.logs.text().lower()


def test_date_header(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        response = get(client, "/single")
    dates = response.header_list(b"date")
    assert len(dates) == 1
    assert IMF_FIXDATE.fullmatch(dates[0]), dates[0]
    sent = email.utils.parsedate_to_datetime(dates[0].decode()).timestamp()
    assert abs(sent - time.time()) < 3600  # a sanity check of the clock, not a timing threshold


def test_date_header_follows_the_clock(serve: Serve) -> None:
    """Date is recomputed by the server's ticker (once a second, faster with a short keep-alive
    timeout), not per request; a response after more than a second carries a later Date."""
    server = serve(framing_app, timeout_keep_alive=0.2)
    with server.raw() as client:
        first = email.utils.parsedate_to_datetime(get(client, "/single").header(b"date").decode())  # type: ignore[union-attr]
    time.sleep(1.1)  # Date has one-second resolution
    with server.raw() as client:
        later = email.utils.parsedate_to_datetime(get(client, "/single").header(b"date").decode())  # type: ignore[union-attr]
    assert later > first


def test_listen_backlog_reaches_the_kernel(serve: Serve) -> None:
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    server = serve(framing_app, backlog=37)
    out = subprocess.run([ss, "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, timeout=10).stdout
    # For a listening socket, ss's Send-Q column is the backlog it was listen()ed with.
    assert out.split()[2] == "37", out


def test_date_header_off(serve: Serve) -> None:
    server = serve(framing_app, date_header=False)
    with server.raw() as client:
        assert get(client, "/single").header(b"date") is None


def test_server_header(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        response = get(client, "/single")
    assert response.header_list(b"server") == [b"asgiserve"]


def test_server_header_off(serve: Serve) -> None:
    server = serve(framing_app, server_header=False)
    with server.raw() as client:
        response = get(client, "/single")
    assert response.header(b"server") is None
    assert response.header(b"date") is not None


def test_app_date_and_server_headers_not_duplicated(serve: Serve) -> None:
    """Date and Server are single-valued: the app's own value replaces the default, never doubles it."""
    server = serve(framing_app)
    with server.raw() as client:
        response = get(client, "/own-date-server")
    assert response.status == 200 and response.body == b"ok"
    assert response.header_list(b"server") == [b"myapp/1"]
    assert response.header_list(b"date") == [b"Mon, 01 Jan 2001 00:00:00 GMT"]


def test_extra_default_headers(serve: Serve) -> None:
    server = serve(framing_app, headers=("x-a: b", "X-Frame-Options: DENY"))
    with server.raw() as client:
        for path in ("/single", "/stream", "/404"):
            response = get(client, path)
            assert response.header(b"x-a") == b"b"
            assert response.header(b"x-frame-options") == b"DENY"


def test_error_responses_are_self_framed(serve: Serve) -> None:
    """The server's own 4xx responses carry a length and close the connection."""
    server = serve(framing_app)
    with server.raw() as client:
        client.send(b"NOT A REQUEST\r\n\r\n")
        response = client.read_response()
        assert response.status == 400
        assert response.header(b"content-length") == str(len(response.body)).encode()
        assert client.buffer == b"" and client.is_closed()


def test_unknown_status_line(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        response = get(client, "/status/299")
        assert response.status == 299 and response.body == b"odd"
        assert response.head.startswith(b"HTTP/1.1 299")
        assert_next_response_clean(client)


def test_status_line_and_header_syntax(serve: Serve) -> None:
    server = serve(framing_app, headers=("x-a: b",))
    with server.raw() as client:
        response = get(client, "/cl")
    lines = response.head[:-4].split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    for line in lines[1:]:
        assert re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\r\n\x00]*", line), line


async def wait_thread_event(event: threading.Event, timeout: float = 10.0) -> None:
    """Wait inside the server's loop for a test-side event (polls: never blocks the loop)."""
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("test never released the app")
        await asyncio.sleep(0.002)


def test_head_not_written_before_first_body_message(serve: Serve) -> None:
    """ASGI: the server must not send the response until the first http.response.body."""
    started, release = threading.Event(), threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(start(200, [(b"content-length", b"4")]))
        started.set()
        await wait_thread_event(release)
        await send(body(b"late"))

    server = serve(app)
    with server.raw() as client:
        client.send(req("/"))
        try:
            assert started.wait(5)
            client.sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                client.sock.recv(1024)
        finally:
            release.set()
            client.sock.settimeout(5)
        response = client.read_response()
    assert response.status == 200 and response.body == b"late"


def test_app_transfer_encoding_is_not_doubled(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/app-chunked"))
        status, headers, _ = client.read_head()
        assert status == 200
        te = [v for k, v in headers if k == b"transfer-encoding"]
        if te:
            assert te == [b"chunked"]
            assert read_chunked_strict(client) == b"abcdef"
        else:
            hdrs = dict(headers)
            assert client._read_exact(int(hdrs[b"content-length"])) == b"abcdef"
        assert_next_response_clean(client)


def test_invalid_app_content_length_gives_500(serve: Serve) -> None:
    server = serve(framing_app)
    with server.raw() as client:
        client.send(req("/bad-cl"))
        response = client.read_response()
    assert response.status == 500
    assert b"abc" not in response.head


def test_head_without_app_length_does_not_claim_zero(serve: Serve) -> None:
    """For HEAD the server cannot know the length of the GET body: it must not invent 0."""
    server = serve(framing_app)
    with server.raw() as client:
        got = get(client, "/head-aware")
        assert got.body == b"12345"
        head = get(client, "/head-aware", method="HEAD")
        assert head.status == 200
        assert head.header(b"content-length") in (None, b"5"), head.head
        assert_next_response_clean(client)


def test_zerocopysend_extension(serve: Serve, tmp_path: Any) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: several file pieces
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.zerocopysend" in scope["extensions"]
        with open(path, "rb") as f:
            if scope["path"] == "/whole":
                await send(start(200, [(b"content-length", b"%d" % len(data))]))
                await send({"type": "http.response.zerocopysend", "file": f})
            else:  # a range, then a trailing body message
                await send(start(200))
                await send({"type": "http.response.zerocopysend", "file": f, "offset": 1000, "count": 300000,
                            "more_body": True})
                await send(body(b"END"))

    server = serve(app)
    with server.raw(timeout=10) as client:
        whole = get(client, "/whole")
        assert whole.status == 200 and whole.body == data
        part = get(client, "/range")
        assert part.status == 200 and part.body == data[1000:301000] + b"END"
        assert_next_response_clean_app(client)


def assert_next_response_clean_app(client: RawClient) -> None:
    client.send(req("/whole"))
    response = client.read_response()
    assert response.status == 200 and len(response.body) == 1024 * 1024


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("with_length", [True, False])
def test_zerocopysend_uses_kernel_sendfile_where_the_transport_allows(
    serve: Serve, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, loop: str, with_length: bool
) -> None:
    """asyncio's transports take os.sendfile; uvloop's can't, and the file is read in pieces.
    Either way the client gets exactly the requested range, correctly framed."""
    import os

    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    calls: list[int] = []
    real_sendfile = os.sendfile

    def counting_sendfile(*args: Any) -> int:
        calls.append(args[3])
        return real_sendfile(*args)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    offset, count = 5, len(data) - 10

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-length", b"%d" % count)] if with_length else []
        with open(path, "rb") as f:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.zerocopysend", "file": f, "offset": offset, "count": count})

    server = serve(app, loop=loop)
    with server.raw(timeout=10) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        response = client.read_response()
    assert response.status == 200
    assert response.body == data[offset : offset + count]
    if loop == "asyncio" and with_length:
        assert calls, "asyncio transport: expected the kernel's sendfile"
    if loop == "uvloop":
        assert not calls
