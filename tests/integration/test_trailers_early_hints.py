"""The ASGI http.response.trailers and http.response.early_hint extensions, on the wire: HTTP/1.1
(raw bytes, curl) and HTTP/2 (a raw frame client, curl, nghttp), on both parsers.

Trailers go out only when the client sent ``TE: trailers`` (as the extension says) and the
protocol can carry them: HTTP/2 always, HTTP/1.1 in a chunked body; elsewhere they are dropped and
the response still ends correctly. A 103 goes to HTTP/1.1 and HTTP/2 clients, never to HTTP/1.0.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Any, Callable

import h2.events
import pytest

from tests.h2client import H2Client
from tests.support import RunningServer

Serve = Callable[..., RunningServer]
pytestmark = pytest.mark.timeout(60)

LINKS = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
HINT_103 = b"HTTP/1.1 103 Early Hints\r\nlink: " + LINKS[0] + b"\r\nlink: " + LINKS[1] + b"\r\n\r\n"


def make_app(errors: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.trailers" in scope["extensions"] and "http.response.early_hint" in scope["extensions"]
        while (await receive()).get("more_body"):
            pass
        path = scope["path"]
        try:
            if path == "/hint":  # before http.response.start
                await send({"type": "http.response.early_hint", "links": LINKS})
            start: dict[str, Any] = {"type": "http.response.start", "status": 200, "trailers": path != "/hint"}
            start["headers"] = [(b"content-length", b"6")] if path == "/cl" else [(b"trailer", b"x-checksum")]
            await send(start)
            if path == "/hint-late":  # after start, before the head is on the wire: still a 103
                await send({"type": "http.response.early_hint", "links": LINKS[:1]})
            if path == "/one":
                await send({"type": "http.response.body", "body": b"abcdef"})
            else:
                await send({"type": "http.response.body", "body": b"abc", "more_body": True})
                await send({"type": "http.response.body", "body": b"def"})
            if path == "/hint-late":
                await send({"type": "http.response.early_hint", "links": LINKS[1:]})  # too late: dropped
            if path != "/hint":
                await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b"123")], "more_trailers": True})
                await send({"type": "http.response.trailers", "headers": [(b"x-more", b"2"), (b"content-length", b"1")]})
        except Exception as exc:  # noqa: BLE001 - the test asserts there were none
            errors.append(repr(exc))
            raise
    return app


def request(path: str, te: bool = True, version: bytes = b"1.1") -> bytes:
    return b"GET %s HTTP/%s\r\nHost: x\r\n%s\r\n" % (path.encode(), version, b"TE: trailers\r\n" if te else b"")


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def test_trailers_http11(serve: Serve) -> None:
    errors: list[str] = []
    srv = serve(make_app(errors))
    chunked = b"3\r\nabc\r\n3\r\ndef\r\n0\r\nx-checksum: 123\r\nx-more: 2\r\n\r\n"
    with srv.raw() as raw:
        # Pipelined on one connection: each response must end exactly where the next begins.
        raw.send(request("/t") + request("/one") + request("/cl") + request("/t", te=False)
                 + request("/t") + b"GET /end HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        data = raw.read_until_close()
    responses = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == 6, data
    assert b"transfer-encoding: chunked\r\n" in responses[0] and body_of(responses[0]) == chunked
    # One body message, then trailers: chunked (not Content-Length), so the trailers can follow.
    assert b"transfer-encoding: chunked\r\n" in responses[1]
    assert body_of(responses[1]) == b"6\r\nabcdef\r\n0\r\nx-checksum: 123\r\nx-more: 2\r\n\r\n"
    # Content-Length framing has no place for trailers: dropped, the response intact.
    assert b"content-length: 6\r\n" in responses[2] and body_of(responses[2]) == b"abcdef"
    # No TE: trailers from the client: dropped.
    assert body_of(responses[3]) == b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
    assert body_of(responses[4]) == chunked and body_of(responses[5]) == chunked
    with srv.raw() as raw:  # HTTP/1.0: close-delimited, no trailers
        raw.send(request("/t", version=b"1.0"))
        data = raw.read_until_close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and body_of(data) == b"abcdef"
    assert errors == []
    assert "Traceback" not in srv.logs.text()


def test_trailers_http2(serve: Serve) -> None:
    errors: list[str] = []
    srv = serve(make_app(errors), http2=True)
    with H2Client(srv.host, srv.port) as client:
        for path, te, trailers in (("/t", True, True), ("/one", True, True), ("/cl", True, True),
                                   ("/t", False, False), ("/hint", True, False)):
            sid = client.request(path, headers=[(b"te", b"trailers")] if te else [])
            status, headers, body = client.response(sid)
            assert (status, body) == (200, b"abcdef"), path
            got = [e for e in client.events if isinstance(e, h2.events.TrailersReceived) and e.stream_id == sid]
            ended = [e for e in client.events if isinstance(e, h2.events.StreamEnded) and e.stream_id == sid]
            assert len(ended) == 1
            if trailers:
                # A trailing HEADERS frame with END_STREAM, after the DATA; framing fields dropped.
                assert [list(e.headers) for e in got] == [[(b"x-checksum", b"123"), (b"x-more", b"2")]], path
                assert got[0].stream_ended is ended[0]
            else:
                assert got == [], path
            if path == "/cl":
                assert headers[b"content-length"] == b"6"
        assert client.goaway is None
    assert errors == []


def test_trailers_http2_curl_and_nghttp(serve: Serve) -> None:
    curl, nghttp = shutil.which("curl"), shutil.which("nghttp")
    if not (curl and nghttp):
        pytest.skip("needs curl and nghttp (nghttp2-client)")
    srv = serve(make_app([]), http2=True)
    out = subprocess.run([curl, "-sS", "-v", "--http2-prior-knowledge", "-H", "TE: trailers", f"{srv.url}/t"],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "abcdef" and "< x-checksum: 123" in out.stderr and "< x-more: 2" in out.stderr, out
    out = subprocess.run([nghttp, "-v", "-H", "te: trailers", f"{srv.url}/t"], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    # The last HEADERS frame carries the trailers and END_STREAM (flags 0x05: END_STREAM | END_HEADERS).
    trailer_at = next(i for i, line in enumerate(lines) if line.endswith("x-checksum: 123"))
    assert "recv HEADERS frame" in lines[trailer_at + 2] and "flags=0x05" in lines[trailer_at + 2], out.stdout


async def bad_trailers_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    await send({"type": "http.response.start", "status": 200, "trailers": path != "/unpromised"})
    if path == "/early":  # trailers before the last body message
        await send({"type": "http.response.trailers", "headers": []})
    await send({"type": "http.response.body", "body": b"ab", "more_body": True})
    await send({"type": "http.response.body", "body": b"cd"})
    if path == "/bad":
        await send({"type": "http.response.trailers", "headers": [(b"x-bad", b"a\r\nb")]})
    elif path == "/unpromised":
        await send({"type": "http.response.trailers", "headers": []})
    # /none: returns without sending the promised trailers


def test_trailer_misuse_http11(serve: Serve) -> None:
    srv = serve(bad_trailers_app)
    for path, body in (("/none", b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"), ("/unpromised", b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")):
        with srv.raw() as raw:
            raw.send(request(path))
            response = raw.read_response()
            assert response.status == 200 and response.body == b"abcd", path
    with srv.raw() as raw:  # invalid trailer value: never on the wire; the response is cut, not completed
        raw.send(request("/bad"))
        data = raw.read_until_close()
        assert b"x-bad" not in data and not data.endswith(b"0\r\n\r\n")
    with srv.raw() as raw:
        raw.send(request("/early"))
        assert raw.read_response().status == 500
    text = srv.logs.text()
    assert "returned without sending http.response.trailers" in text
    assert "did not set 'trailers': True" in text and "Invalid http.response.trailers" in text
    assert "the body is not complete" in text


def test_early_hints_http11_and_curl(serve: Serve) -> None:
    srv = serve(make_app([]))
    with srv.raw() as raw:
        raw.send(request("/hint") + request("/hint-late") + request("/hint", version=b"1.0"))
        data = raw.read_until_close()
    parts = data.split(b"HTTP/1.1 200 OK\r\n")
    assert parts[0] == HINT_103  # the 103, then the final response
    assert parts[1].endswith(b"HTTP/1.1 103 Early Hints\r\nlink: " + LINKS[0] + b"\r\n\r\n")  # before the head only
    assert data.count(b"103 Early Hints") == 2  # none for the HTTP/1.0 request, none after the head
    assert not parts[2].endswith(b"\r\n\r\n" + HINT_103)
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run([curl, "-sS", "-v", f"{srv.url}/hint"], capture_output=True, text=True, timeout=20)
        assert "< HTTP/1.1 103 Early Hints" in out.stderr and f"< link: {LINKS[1].decode()}" in out.stderr, out
        assert "< HTTP/1.1 200 OK" in out.stderr and out.stdout == "abcdef"


def test_early_hints_http2(serve: Serve) -> None:
    srv = serve(make_app([]), http2=True)
    with H2Client(srv.host, srv.port) as client:
        sid = client.request("/hint")
        status, _, body = client.response(sid)
        assert (status, body) == (200, b"abcdef")
        kinds = [type(e) for e in client.events if getattr(e, "stream_id", None) == sid]
        assert kinds.index(h2.events.InformationalResponseReceived) < kinds.index(h2.events.ResponseReceived)
        hint = next(e for e in client.events if isinstance(e, h2.events.InformationalResponseReceived))
        assert list(hint.headers) == [(b":status", b"103"), (b"link", LINKS[0]), (b"link", LINKS[1])]
        sid = client.request("/hint-late")
        client.response(sid)
        hints = [e for e in client.events if isinstance(e, h2.events.InformationalResponseReceived) and e.stream_id == sid]
        assert [list(e.headers) for e in hints] == [[(b":status", b"103"), (b"link", LINKS[0])]]
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run([curl, "-sS", "-v", "--http2-prior-knowledge", f"{srv.url}/hint"],
                             capture_output=True, text=True, timeout=20)
        assert "< HTTP/2 103" in out.stderr and f"< link: {LINKS[0].decode()}" in out.stderr, out
        assert "< HTTP/2 200" in out.stderr and out.stdout == "abcdef"
