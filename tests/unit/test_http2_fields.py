"""The request checks that make a malformed HTTP/2 request a stream error (asgiserve/http2/frames.py):
every rule h2's inbound validation had, and no valid request refused."""
from __future__ import annotations

import pytest

pytest.importorskip("h2")

from asgiserve.http2.frames import request_problem  # noqa: E402

HEAD = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", b"/a?b=1")]


@pytest.mark.parametrize("headers, end", [
    (HEAD, True),
    (HEAD + [(b"host", b"example.com"), (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x-empty", b"")], True),
    (HEAD + [(b"te", b"Trailers"), (b"content-length", b"0")], True),
    (HEAD + [(b"content-length", b"12"), (b"content-length", b"12")], False),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"*"), (b"host", b"h")], True),  # no :authority: host
    ([(b":method", b"CONNECT"), (b":authority", b"example.com:443")], False),
    ([(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"), (b":path", b"/ws"),
      (b":authority", b"example.com")], False),
    (HEAD + [(b"x-odd", b"v\x01\x7f\xff a\tb"), (b"x-name!#$%&'*+-.^_`|~09az", b"1")], True),
    ([(b":method", b"M-SEARCH"), (b":scheme", b"coap+tcp.x-y"), (b":authority", b"h"), (b":path", b"/")], True),
])
def test_valid_requests_pass(headers: list[tuple[bytes, bytes]], end: bool) -> None:
    assert request_problem(headers, end) is None


@pytest.mark.parametrize("headers, end, reason", [
    ([(b"x", b"1")] + HEAD, True, "after a regular field"),
    (HEAD + [(b":status", b"200")], True, "in a request"),
    (HEAD + [(b":x", b"1")], True, "in a request"),
    (HEAD + [HEAD[0]], True, "duplicated"),
    (HEAD[1:], True, "no :method"),
    ([HEAD[0], HEAD[2], HEAD[3]], True, "no :scheme"),
    (HEAD[:3], True, "no :path"),
    ([(b":method", b"")] + HEAD[1:], True, "invalid :method"),
    ([(b":method", b"G T")] + HEAD[1:], True, "invalid :method"),
    ([HEAD[0], (b":scheme", b"")] + HEAD[2:], True, "invalid :scheme"),
    ([HEAD[0], (b":scheme", b"1http")] + HEAD[2:], True, "invalid :scheme"),
    (HEAD[:3] + [(b":path", b"")], True, "empty :path"),
    ([(b":method", b"CONNECT"), (b":authority", b"h:1"), (b":path", b"/")], False, "CONNECT with"),
    (HEAD + [(b":protocol", b"websocket")], True, ":protocol without CONNECT"),
    ([HEAD[0], HEAD[1], HEAD[3]], True, "neither :authority nor host"),
    (HEAD + [(b"host", b"other")], True, "differ"),
    (HEAD + [(b"host", b"example.com"), (b"host", b"example.com")], True, "more than one host"),
    (HEAD + [(b"X-Upper", b"1")], True, "invalid field name"),
    (HEAD + [(b"", b"1")], True, "invalid field name"),
    (HEAD + [(b"a:b", b"1")], True, "invalid field name"),
    (HEAD + [(b"a b", b"1")], True, "invalid field name"),
    (HEAD + [(b"x", b"a\rb")], True, "CR, LF or NUL"),
    (HEAD + [(b"x", b"a\x00b")], True, "CR, LF or NUL"),
    (HEAD + [(b"x", b"a ")], True, "whitespace"),
    (HEAD + [(b"x", b"\ta")], True, "whitespace"),
    (HEAD + [(b"connection", b"close")], True, "connection-specific"),
    (HEAD + [(b"keep-alive", b"5")], True, "connection-specific"),
    (HEAD + [(b"proxy-connection", b"x")], True, "connection-specific"),
    (HEAD + [(b"upgrade", b"h2c")], True, "connection-specific"),
    (HEAD + [(b"transfer-encoding", b"chunked")], True, "connection-specific"),
    (HEAD + [(b"te", b"gzip")], True, "TE other than trailers"),
    (HEAD + [(b"content-length", b"-1")], False, "invalid content-length"),
    (HEAD + [(b"content-length", b"1"), (b"content-length", b"2")], False, "conflicting"),
    (HEAD + [(b"content-length", b"3")], True, "without the content"),
])
def test_malformed_requests_are_named(headers: list[tuple[bytes, bytes]], end: bool, reason: str) -> None:
    problem = request_problem(headers, end)
    assert problem is not None and reason in problem
