"""HTTP/2 stream-level answers that must not cost the connection: streams over the concurrency
limit (REFUSED_STREAM), oversized header lists (431), request trailers, the client's own GOAWAY,
and a connection that never opens a stream (--timeout-request-header). A raw frame client
(tests/h2client.py) drives each case; every test runs on both parsers (the HTTP/1.1 parser sees
the connection first and hands it over on the preface)."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import h2.events
import pytest
from h2.errors import ErrorCodes

from hyperframe.frame import HeadersFrame, PriorityFrame

from tests.h2client import H2Client, frame_bytes
from tests.support import RunningServer

Serve = Callable[..., RunningServer]
pytestmark = pytest.mark.timeout(60)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body; answers "method path size"."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{scope['method']} {scope['path']} {size}".encode()})


class Gated:
    """An app whose requests wait for ``gate``; ``started`` is set once ``expect`` requests are in."""

    def __init__(self, expect: int) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.seen: list[str] = []
        self.after: list[str] = []  # what receive() said once the body was read
        self.expect = expect

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.seen.append(scope["path"])
        if len(self.seen) >= self.expect:
            self.started.set()
        while (await receive()).get("more_body"):
            pass
        if scope["path"].startswith("/listen"):
            self.after.append((await receive())["type"])  # waits: http.disconnect when the stream ends
            return
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_streams_over_the_limit_are_refused_the_others_go_on(serve: Serve) -> None:
    app = Gated(2)
    srv = serve(app, http2=True, http2_max_concurrent_streams=2)
    with H2Client(srv.host, srv.port) as client:
        # Sent before the client read the server's SETTINGS, so its h2 does not hold them back.
        sids = [client.request(f"/s{i}", headers=[(b"x-filler", b"%d" % i * 50)]) for i in range(5)]
        for sid in sids[2:]:
            with pytest.raises(ConnectionError, match="REFUSED_STREAM"):
                client.response(sid)
        assert app.started.wait(5)
        app.gate.set()
        for i, sid in enumerate(sids[:2]):
            assert client.response(sid)[::2] == (200, f"/s{i}".encode())
        # Same connection, HPACK still in step (the refused blocks were decoded too).
        status, _, body = client.response(client.request("/after", headers=[(b"x-filler", b"4" * 50)]))
        assert (status, body) == (200, b"/after")
        assert client.goaway is None and not client.closed
    assert app.seen == ["/s0", "/s1", "/after"]  # refused streams never reach the app: safe to retry
    assert "Traceback" not in srv.logs.text()


def test_oversized_header_list_gets_431_on_its_stream(serve: Serve) -> None:
    srv = serve(echo_app, http2=True, http2_max_header_list_size=4096)
    with H2Client(srv.host, srv.port) as client:
        client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        open_sid = client.request("/open", "POST", body=b"ab", end=False)  # in flight meanwhile
        big = client.request("/big", headers=[(b"x-big", b"v" * 8000)])
        status, headers, body = client.response(big)
        assert (status, body) == (431, b"Request Header Fields Too Large\n")
        client.conn.send_data(open_sid, b"cd", end_stream=True)
        client.flush()
        assert client.response(open_sid)[::2] == (200, b"POST /open 4")
        assert client.response(client.request("/after"))[::2] == (200, b"GET /after 0")
        assert client.goaway is None and not client.closed
    text = srv.logs.text()
    assert "Request header fields too large" in text and "Traceback" not in text


def test_header_list_far_over_the_limit_ends_the_connection(serve: Serve) -> None:
    """Beyond 4x the limit the block is not decoded to its end (an HPACK bomb's cost is bounded),
    which leaves the connection's HPACK state unusable: GOAWAY for the connection."""
    srv = serve(echo_app, http2=True, http2_max_header_list_size=4096)
    with H2Client(srv.host, srv.port) as client:
        client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        client.request("/", headers=[(b"x-big-%d" % i, b"v" * 4000) for i in range(6)])
        assert client.until(lambda c: c.goaway is not None or c.closed, timeout=5)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    text = srv.logs.text()
    assert "HTTP/2 protocol error" in text and "Traceback" not in text


def test_request_trailers_are_dropped_and_the_request_completes(serve: Serve) -> None:
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        messages = []
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body"):
                break
        seen.append((scope["headers"], messages))
        body = b"".join(m.get("body", b"") for m in messages)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d %s" % (len(body), body[:3])})

    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        sid = client.request("/body", "POST", end=False, headers=[(b"te", b"trailers")])
        body = b"abc" + b"x" * 40000
        for i in range(0, len(body), 16384):  # within the stream's initial window (256 KiB)
            client.conn.send_data(sid, body[i:i + 16384])
        client.conn.send_headers(sid, [(b"x-checksum", b"42")], end_stream=True)  # trailers end the request
        client.flush()
        assert client.response(sid)[::2] == (200, b"40003 abc")
        sid = client.request("/no-body", "POST", end=False)
        client.conn.send_headers(sid, [(b"x-checksum", b"0")], end_stream=True)
        client.flush()
        assert client.response(sid)[::2] == (200, b"0 ")
        assert client.response(client.request("/after"))[::2] == (200, b"0 ")
        assert client.goaway is None
    for headers, messages in seen:
        assert all(name != b"x-checksum" for name, _ in headers)  # not mixed into the head
        assert messages[-1]["type"] == "http.request" and messages[-1]["more_body"] is False
    assert "Traceback" not in srv.logs.text()


def test_client_goaway_lets_open_streams_finish(serve: Serve) -> None:
    app = Gated(3)
    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        sids = [client.request(f"/g{i}") for i in range(3)]
        assert app.started.wait(5)
        client.conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=0)  # we accept no pushed stream
        client.flush()
        app.gate.set()
        for i, sid in enumerate(sids):
            assert client.response(sid)[::2] == (200, f"/g{i}".encode())
        assert client.until(lambda c: c.closed, timeout=5)  # closed once they are answered
    text = srv.logs.text()
    assert text.count('HTTP/2" 200') == 3
    assert "Traceback" not in text and "Exception" not in text and "ERROR" not in text


def test_client_goaway_with_an_error_ends_its_streams(serve: Serve) -> None:
    app = Gated(2)
    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        client.request("/listen1")
        client.request("/listen2")
        assert app.started.wait(5)
        client.conn.close_connection(ErrorCodes.PROTOCOL_ERROR, last_stream_id=0)
        client.flush()
        assert client.until(lambda c: c.closed, timeout=5)
    srv.stop()
    assert app.after == ["http.disconnect", "http.disconnect"]  # the apps were told
    text = srv.logs.text()
    assert "sent GOAWAY(PROTOCOL_ERROR)" in text and "Traceback" not in text


def test_connection_without_a_stream_is_closed_by_the_request_header_timeout(serve: Serve) -> None:
    srv = serve(echo_app, http2=True, timeout_request_header=0.5, timeout_keep_alive=60)
    with H2Client(srv.host, srv.port) as client:  # preface and SETTINGS, then nothing
        assert client.until(lambda c: c.closed, timeout=10)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
        assert client.goaway.last_stream_id == 0
    assert "opened no stream within 0.5s" in srv.logs.text()
    with H2Client(srv.host, srv.port) as client:  # once a stream came, only the keep-alive timeout applies
        assert client.response(client.request("/x"))[0] == 200
        assert not client.until(lambda c: c.closed, timeout=1.5)
        assert client.response(client.request("/y"))[0] == 200


# -- malformed requests: stream errors (RFC 9113 8.1.1), not connection errors -------------------
def _head(path: str, *extra: tuple[bytes, bytes], method: bytes = b"GET") -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", path.encode())] + list(extra)


def _without(name: bytes, path: str) -> list[tuple[bytes, bytes]]:
    return [h for h in _head(path) if h[0] != name]


def _twice(name: bytes, path: str) -> list[tuple[bytes, bytes]]:
    head = _head(path)
    at = next(i for i, h in enumerate(head) if h[0] == name)
    return head[:at + 1] + [head[at]] + head[at + 1:]


def _emptied(name: bytes, path: str) -> list[tuple[bytes, bytes]]:
    return [(n, b"" if n == name else v) for n, v in _head(path)]


# (case, how the malformed stream is sent: on a new stream ("block": its header list, with
# END_STREAM) or as a function of the client returning the stream id; whether its app starts
# first (then it must get http.disconnect)).
MALFORMED: list[tuple[str, Any, bool]] = [
    # 8.1.2.1 (h2spec numbering): pseudo-header fields
    ("unknown pseudo-header", _head("/m", (b":test", b"ok"))[:4] + [(b":test", b"ok")], False),
    ("response pseudo-header in a request", _head("/m")[:4] + [(b":status", b"200")], False),
    ("pseudo-header after a regular field", [(b"x-test", b"ok")] + _head("/m"), False),
    # 8.1.2 / 8.1.2.2: fields
    ("upper-case field name", _head("/m", (b"X-Test", b"ok")), False),
    ("connection-specific field", _head("/m", (b"connection", b"keep-alive")), False),
    ("transfer-encoding", _head("/m", (b"transfer-encoding", b"chunked")), False),
    ("TE other than trailers", _head("/m", (b"te", b"trailers, deflate")), False),
    ("LF in a field value", _head("/m", (b"x-test", b"a\nb")), False),
    ("whitespace around a field value", _head("/m", (b"x-test", b" a")), False),
    (":authority and host differ", _head("/m", (b"host", b"elsewhere")), False),
    # 8.1.2.3: request pseudo-header fields
    ("empty :method", _emptied(b":method", "/m"), False),
    ("empty :scheme", _emptied(b":scheme", "/m"), False),
    ("empty :path", _emptied(b":path", "/m"), False),
    ("no :method", _without(b":method", "/m"), False),
    ("no :scheme", _without(b":scheme", "/m"), False),
    ("no :path", _without(b":path", "/m"), False),
    ("duplicated :method", _twice(b":method", "/m"), False),
    ("duplicated :scheme", _twice(b":scheme", "/m"), False),
    ("duplicated :path", _twice(b":path", "/m"), False),
    # 5.3.1: a stream cannot depend on itself
    ("HEADERS depending on itself", lambda c: c.send_block(_head("/m"), depends_on=c.conn.get_next_available_stream_id()), False),
    ("PRIORITY depending on itself, idle stream",  # after a request: before one, the client's h2 refuses any RST_STREAM
     lambda c: c.response(c.request("/first")) and _send(c, PriorityFrame(c.conn.get_next_available_stream_id(), depends_on=0)),
     False),
    ("PRIORITY depending on itself, open stream", lambda c: _send(c, PriorityFrame(_post(c), depends_on=0)), True),
    # 8.1: a second HEADERS frame without END_STREAM; 8.1.2.1: pseudo-header fields in trailers
    ("second HEADERS without END_STREAM", lambda c: c.send_block([(b"x-trailer", b"1")], sid=_post(c), end=False), True),
    ("pseudo-header in trailers", lambda c: c.send_block([(b":method", b"POST")], sid=_post(c)), True),
    # 8.1.2.6: content-length that the DATA frames do not add up to
    ("content-length over the DATA", lambda c: _data(c, _post(c, b"10"), b"test", end=True), True),
    ("content-length under the DATA", lambda c: _data(c, _data(c, _post(c, b"6"), b"test"), b"test", end=True), True),
    ("content-length without DATA", _head("/m", (b"content-length", b"5"), method=b"POST"), False),
    ("content-length over the DATA, then trailers", lambda c: c.send_block([(b"x-sum", b"1")], sid=_post(c, b"10")), True),
]


def _post(client: H2Client, length: bytes = b"") -> int:
    """A POST whose body is still to come (its app starts); with content-length ``length``."""
    sid = client.request("/started", "POST", end=False, headers=[(b"content-length", length)] if length else [])
    if length:
        sid = _data(client, sid, b"test")
    return sid


def _data(client: H2Client, sid: int, data: bytes, end: bool = False) -> int:
    client.conn.send_data(sid, data, end_stream=end)
    client.flush()
    return sid


def _send(client: H2Client, frame: Any) -> int:
    if frame.depends_on == 0:
        frame.depends_on = frame.stream_id  # on itself
    client.send_raw(frame_bytes(frame))
    return int(frame.stream_id)


class Recorder:
    """Reads the body and answers 200; records how each path's request ended."""

    def __init__(self) -> None:
        self.ends: dict[str, str] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.ends[scope["path"]] = "http.disconnect"
                return
            if not message.get("more_body"):
                break
        self.ends[scope["path"]] = "complete"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})


@pytest.mark.parametrize("case", [c[0] for c in MALFORMED])
def test_malformed_request_is_a_stream_error(serve: Serve, case: str) -> None:
    """RST_STREAM(PROTOCOL_ERROR) on that stream; the app never sees it (or, when the body gave it
    away, gets http.disconnect); the next request on the same connection is answered."""
    _, how, started = next(c for c in MALFORMED if c[0] == case)
    app = Recorder()
    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        sid = client.send_block(how) if isinstance(how, list) else how(client)
        assert client.reset_code(sid) == ErrorCodes.PROTOCOL_ERROR, client.frames()[-3:]
        client.skip(sid)
        status, _, body = client.response(client.request("/after"))
        assert (status, body) == (200, b"/after")
        assert client.goaway is None and not client.closed
    srv.stop()
    assert app.ends.get("/started") == ("http.disconnect" if started else None)
    assert "/m" not in app.ends and app.ends["/after"] == "complete"
    text = srv.logs.text()
    assert "Malformed HTTP/2 request" in text and "Traceback" not in text


def test_malformed_streams_log_once_and_count_toward_the_flood_limit(serve: Serve) -> None:
    """Many malformed streams on one connection: one info line (the others at debug); past the
    flood limit (1000 a second, like resets and refusals) the connection gets
    GOAWAY(ENHANCE_YOUR_CALM). The app never runs."""
    app = Recorder()
    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        for _ in range(5):
            client.skip(client.send_block(_head("/m", (b"connection", b"close"))))
        assert client.response(client.request("/after"))[::2] == (200, b"/after")
        data = b""
        for _ in range(1100):  # sent in one go: well within a second
            sid = client.conn.get_next_available_stream_id()
            frame = HeadersFrame(sid, data=client.conn.encoder.encode(_head("/m", (b"te", b"gzip"))),
                                 flags=["END_HEADERS", "END_STREAM"])
            data += frame_bytes(frame)
            client.skip(sid)
        try:
            client.send_raw(data)
        except OSError:
            pass
        assert client.until(lambda c: c.goaway is not None or c.closed, timeout=10)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    srv.stop()
    assert app.ends == {"/after": "complete"}
    malformed = [r for r in srv.logs.records if r.getMessage().startswith("Malformed HTTP/2 request")]
    assert [r.levelname for r in malformed[:3]] == ["INFO", "DEBUG", "DEBUG"]
    assert sum(r.levelname == "INFO" for r in malformed) == 1 and 900 < len(malformed) <= 1000  # then the cut
    assert "HTTP/2 flood" in srv.logs.text() and "Traceback" not in srv.logs.text()


# -- what an app sees of the request's fields ------------------------------------------------------
def test_split_cookie_fields_reach_the_app_as_one(serve: Serve) -> None:
    """RFC 9113 8.2.3: cookie fields are joined with "; ", last (as h2's normalisation did); asgiserve
    joins them itself, in the loop that reads the fields."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(list(scope["headers"]))
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body"})

    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        split = [(b"cookie", b"a=1"), (b"x-one", b"1"), (b"cookie", b"b=2"), (b"cookie", b"c=3")]
        assert client.response(client.request("/split", headers=split))[0] == 204
        assert client.response(client.request("/one", headers=[(b"cookie", b"a=1"), (b"x-one", b"1")]))[0] == 204
        assert client.response(client.request("/none", headers=[(b"x-one", b"1")]))[0] == 204
    host = (b"host", b"127.0.0.1:%d" % srv.port)
    assert seen == [[host, (b"x-one", b"1"), (b"cookie", b"a=1; b=2; c=3")],
                    [host, (b"x-one", b"1"), (b"cookie", b"a=1")],
                    [host, (b"x-one", b"1")]]
