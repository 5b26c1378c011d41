"""The request corpus: raw bytes and the exact outcome every parser backend must produce.

Each ``Case`` holds the raw request bytes (CRLFs explicit) and the expected normalized event
list (see ``normalize``): ``head(...)``, ``body(...)`` (all BodyChunks of one message joined),
``END`` and, for invalid input, a final ``error(status)``. ``tests/unit/test_corpus.py`` feeds
every case to both parsers, whole, byte by byte and split at seeded random points, then calls
``feed_eof()``. The rules behind the invalid cases are documented in asgiserve/http/framing.py
and limits.py. ``SMALL`` limits keep the limit cases small enough to feed byte by byte.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgiserve.http.events import BodyChunk, MessageEnd, ParseError, RequestHead

Headers = list[tuple[bytes, bytes]]
Expected = list[tuple[Any, ...]]

END = ("end",)
SMALL = {"limit_request_line": 64, "limit_request_fields": 8, "limit_request_field_size": 64}
HOST: Headers = [(b"host", b"a")]


def head(method: bytes, target: bytes, version: str = "1.1", headers: Headers = HOST) -> tuple[Any, ...]:
    return ("head", method, target, version, list(headers))


def body(data: bytes) -> tuple[Any, ...]:
    return ("body", data)


def error(status: int) -> tuple[Any, ...]:
    return ("error", status)


def msg(method: bytes, target: bytes, version: str = "1.1", headers: Headers = HOST, data: bytes = b"") -> Expected:
    return [head(method, target, version, headers)] + ([body(data)] if data else []) + [END]


def normalize(events: list[Any]) -> Expected:
    out: Expected = []
    for event in events:
        if type(event) is BodyChunk:
            assert event.data, "empty BodyChunk"
            if out and out[-1][0] == "body":
                out[-1] = ("body", out[-1][1] + event.data)
            else:
                out.append(("body", bytes(event.data)))
        elif type(event) is RequestHead:
            out.append(head(event.method, event.target, event.http_version, event.headers))
        elif type(event) is MessageEnd:
            out.append(END)
        elif type(event) is ParseError:
            out.append(error(event.status))
        else:  # pragma: no cover
            raise AssertionError(f"unexpected event {event!r}")
    return out


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: Expected
    config: dict[str, int] = field(default_factory=dict)

    @property
    def status(self) -> Any:
        last = self.expect[-1] if self.expect else None
        return last[1] if last and last[0] == "error" else None


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
CL5 = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
CL5_HEADERS: Headers = [(b"host", b"a"), (b"content-length", b"5")]
TE: Headers = [(b"host", b"a"), (b"transfer-encoding", b"chunked")]
CHUNKED_HEAD = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(chunks: bytes) -> bytes:
    return CHUNKED_HEAD + chunks


def post_te(te: bytes, rest: bytes = b"0\r\n\r\n", version: bytes = b"1.1") -> bytes:
    return b"POST /c HTTP/" + version + b"\r\nHost: a\r\nTransfer-Encoding: " + te + b"\r\n\r\n" + rest


def get_with(*lines: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


VALID: list[Case] = [
    Case("simple-get", GET, msg(b"GET", b"/")),
    Case(
        "headers-order-repeats-case",
        b"GET /x?y=1&z HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Dup: 1\r\nx-DUP: 2\r\nCookie: a=b\r\n\r\n",
        msg(b"GET", b"/x?y=1&z", headers=[(b"host", b"a"), (b"accept", b"*/*"), (b"x-dup", b"1"),
                                          (b"x-dup", b"2"), (b"cookie", b"a=b")]),
    ),
    Case(
        "value-ows-stripped-inner-kept",
        get_with(b"X-A:   spaced  value \t", b"X-B:\tv", b"X-C:v"),
        msg(b"GET", b"/", headers=HOST + [(b"x-a", b"spaced  value"), (b"x-b", b"v"), (b"x-c", b"v")]),
    ),
    Case("empty-values", get_with(b"X-Empty:", b"X-Blank: \t "),
         msg(b"GET", b"/", headers=HOST + [(b"x-empty", b""), (b"x-blank", b"")])),
    Case("obs-text-value", get_with(b"X-Bin: caf\xc3\xa9 \x80\xff"),
         msg(b"GET", b"/", headers=HOST + [(b"x-bin", b"caf\xc3\xa9 \x80\xff")])),
    Case("all-tchar-name", get_with(b"!#$%&'*+-.^_`|~09azAZ: v"),
         msg(b"GET", b"/", headers=HOST + [(b"!#$%&'*+-.^_`|~09azaz", b"v")])),
    Case("empty-host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", msg(b"GET", b"/", headers=[(b"host", b"")])),
    Case("content-length-body", CL5, msg(b"POST", b"/p", headers=CL5_HEADERS, data=b"hello")),
    Case("content-length-zero", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
         msg(b"POST", b"/", headers=HOST + [(b"content-length", b"0")])),
    Case("content-length-leading-zeros", b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc",
         msg(b"PUT", b"/", headers=HOST + [(b"content-length", b"003")], data=b"abc")),
    Case("content-length-ows", b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length:  3 \t\r\n\r\nabc",
         msg(b"PUT", b"/", headers=HOST + [(b"content-length", b"3")], data=b"abc")),
    Case("get-with-body", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
         msg(b"GET", b"/", headers=HOST + [(b"content-length", b"2")], data=b"hi")),
    Case("body-looks-like-a-request",
         b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
         msg(b"POST", b"/", headers=HOST + [(b"content-length", b"35")],
             data=b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")),
    Case("chunked-one", chunked(b"5\r\nhello\r\n0\r\n\r\n"), msg(b"POST", b"/c", headers=TE, data=b"hello")),
    Case("chunked-many-hex-case-zeros", chunked(b"1\r\na\r\nA\r\n0123456789\r\n000b\r\nhello world\r\n00\r\n\r\n"),
         msg(b"POST", b"/c", headers=TE, data=b"a0123456789hello world")),
    Case("chunked-long-zero-padded-size", chunked(b"000000000000000000000003\r\nabc\r\n0\r\n\r\n"),
         msg(b"POST", b"/c", headers=TE, data=b"abc")),
    Case("chunked-extensions", chunked(b'3;name=value\r\nabc\r\n3;a;b=c\r\ndef\r\n1;q="x \\" y"\r\ng\r\n0;end\r\n\r\n'),
         msg(b"POST", b"/c", headers=TE, data=b"abcdefg")),
    Case("chunked-trailers-dropped", chunked(b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n"),
         msg(b"POST", b"/c", headers=TE, data=b"abc")),
    Case("chunked-data-with-crlf-and-fake-end", chunked(b"9\r\n0\r\n\r\nGET \r\n0\r\n\r\n"),
         msg(b"POST", b"/c", headers=TE, data=b"0\r\n\r\nGET ")),
    Case("chunked-empty-body", chunked(b"0\r\n\r\n"), msg(b"POST", b"/c", headers=TE)),
    Case("te-chunked-any-case", post_te(b"ChUnKeD", b"2\r\nok\r\n0\r\n\r\n"),
         msg(b"POST", b"/c", headers=[(b"host", b"a"), (b"transfer-encoding", b"ChUnKeD")], data=b"ok")),
    Case("http10-no-host", b"GET /old HTTP/1.0\r\n\r\n", msg(b"GET", b"/old", "1.0", [])),
    Case("http10-body", b"POST / HTTP/1.0\r\nContent-Length: 4\r\n\r\ndata",
         msg(b"POST", b"/", "1.0", [(b"content-length", b"4")], b"data")),
    Case("http10-keep-alive-pipelined",
         b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
         msg(b"GET", b"/1", "1.0", [(b"connection", b"keep-alive")]) + msg(b"GET", b"/2", "1.0", [])),
    Case("pipelined-gets", GET + b"GET /2 HTTP/1.1\r\nHost: b\r\n\r\n" + b"HEAD /3 HTTP/1.1\r\nHost: c\r\n\r\n",
         msg(b"GET", b"/") + msg(b"GET", b"/2", headers=[(b"host", b"b")]) + msg(b"HEAD", b"/3", headers=[(b"host", b"c")])),
    Case("pipelined-bodies", CL5 + chunked(b"2\r\nhi\r\n0\r\n\r\n") + GET,
         msg(b"POST", b"/p", headers=CL5_HEADERS, data=b"hello") + msg(b"POST", b"/c", headers=TE, data=b"hi")
         + msg(b"GET", b"/")),
    Case("pipelined-after-connection-close",
         b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET,
         msg(b"GET", b"/1", headers=HOST + [(b"connection", b"close")]) + msg(b"GET", b"/")),
    Case("empty-lines-before-and-between", b"\r\n\r\n" + GET + b"\r\n" + CL5 + b"\r\n\r\n",
         msg(b"GET", b"/") + msg(b"POST", b"/p", headers=CL5_HEADERS, data=b"hello")),
    Case("upgrade-with-body-then-pipelined",
         b"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc" + GET,
         msg(b"POST", b"/ws", headers=HOST + [(b"connection", b"Upgrade"), (b"upgrade", b"websocket"),
                                              (b"content-length", b"3")], data=b"abc") + msg(b"GET", b"/")),
    Case("upgrade-h2c-chunked-then-pipelined",
         b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
         b"HTTP2-Settings: AAMAAABkAAQAAP__\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + GET,
         msg(b"POST", b"/", headers=HOST + [(b"connection", b"Upgrade, HTTP2-Settings"), (b"upgrade", b"h2c"),
                                            (b"http2-settings", b"AAMAAABkAAQAAP__"),
                                            (b"transfer-encoding", b"chunked")], data=b"abc") + msg(b"GET", b"/")),
    Case("upgrade-without-body-then-pipelined",
         b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n" + GET,
         msg(b"GET", b"/ws", headers=HOST + [(b"connection", b"upgrade"), (b"upgrade", b"websocket")])
         + msg(b"GET", b"/")),
    Case("upgrade-header-alone", get_with(b"Upgrade: websocket"),
         msg(b"GET", b"/", headers=HOST + [(b"upgrade", b"websocket")])),
    Case("connect-then-pipelined", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + GET,
         msg(b"CONNECT", b"example.com:443", headers=[(b"host", b"example.com:443")]) + msg(b"GET", b"/")),
    Case("connect-ipv6-content-length-zero",
         b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\n\r\n",
         msg(b"CONNECT", b"[::1]:8080", headers=[(b"host", b"[::1]:8080"), (b"content-length", b"0")])),
    Case("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", msg(b"OPTIONS", b"*")),
    Case("absolute-form", b"GET http://example.com/p/a?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
         msg(b"GET", b"http://example.com/p/a?q=1", headers=[(b"host", b"example.com")])),
    Case("absolute-form-userinfo-port-ipv6", b"GET HTTPS://u:p@[::1]:8443 HTTP/1.1\r\nHost: a\r\n\r\n",
         msg(b"GET", b"HTTPS://u:p@[::1]:8443")),
    Case("percent-encoded-target", b"GET /caf%C3%A9/%20x?q=%2F%zz HTTP/1.1\r\nHost: a\r\n\r\n",
         msg(b"GET", b"/caf%C3%A9/%20x?q=%2F%zz")),
    Case("visible-ascii-target", b'GET /a"b<>{}|\\^`[]!$\'()*,;=:@~ HTTP/1.1\r\nHost: a\r\n\r\n',
         msg(b"GET", b'/a"b<>{}|\\^`[]!$\'()*,;=:@~')),
    Case("target-fragment-and-double-slash", b"GET //a/../b#frag?x HTTP/1.1\r\nHost: a\r\n\r\n",
         msg(b"GET", b"//a/../b#frag?x")),
    Case("expect-100-continue", b"PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
         msg(b"PUT", b"/up", headers=HOST + [(b"expect", b"100-continue"), (b"content-length", b"2")], data=b"ok")),
    Case("multiple-spaces-in-request-line", b"GET   /sp   HTTP/1.1\r\nHost: a\r\n\r\n", msg(b"GET", b"/sp")),
    Case("other-methods",
         b"DELETE /d HTTP/1.1\r\nHost: a\r\n\r\nPATCH /p HTTP/1.1\r\nHost: a\r\n\r\n"
         b"PURGE /u HTTP/1.1\r\nHost: a\r\n\r\nM-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n"
         b"QUERY /q HTTP/1.1\r\nHost: a\r\n\r\n",
         msg(b"DELETE", b"/d") + msg(b"PATCH", b"/p") + msg(b"PURGE", b"/u") + msg(b"M-SEARCH", b"/")
         + msg(b"QUERY", b"/q")),
    Case("request-line-at-limit", b"GET /" + b"a" * 50 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
         msg(b"GET", b"/" + b"a" * 50), SMALL),
    Case("fields-at-limit", get_with(*[b"X-%d: v" % i for i in range(7)]),
         msg(b"GET", b"/", headers=HOST + [(b"x-%d" % i, b"v") for i in range(7)]), SMALL),
    Case("field-at-limit", get_with(b"X-A:   " + b"v" * 59 + b"  "),
         msg(b"GET", b"/", headers=HOST + [(b"x-a", b"v" * 59)]), SMALL),
    Case("trailers-at-limit", chunked(b"1\r\nx\r\n0\r\n" + b"".join(b"T-%d: v\r\n" % i for i in range(8)) + b"\r\n"),
         msg(b"POST", b"/c", headers=TE, data=b"x"), SMALL),
]


INVALID: list[Case] = [
    # -- framing / smuggling -----------------------------------------------------------
    Case("cl-and-te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         [error(400)]),
    Case("te-and-cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
         [error(400)]),
    Case("te-and-cl-zero", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
         [error(400)]),
    Case("cl-duplicate-equal", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
         [error(400)]),
    Case("cl-duplicate-differing", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 35\r\n\r\n",
         [error(400)]),
    Case("cl-list-equal", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", [error(400)]),
    Case("cl-list-differing", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 35\r\n\r\n", [error(400)]),
    Case("cl-plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", [error(400)]),
    Case("cl-negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", [error(400)]),
    Case("cl-hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", [error(400)]),
    Case("cl-inner-space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\nabc", [error(400)]),
    Case("cl-empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\nabc", [error(400)]),
    Case("cl-overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", [error(400)]),
    Case("te-chunked-identity", post_te(b"chunked, identity"), [error(400)]),
    Case("te-gzip", post_te(b"gzip", b"3\r\nabc\r\n0\r\n\r\n"), [error(400)]),
    Case("te-gzip-chunked", post_te(b"gzip, chunked"), [error(400)]),
    Case("te-identity", post_te(b"identity", b"abc"), [error(400)]),
    Case("te-xchunked", post_te(b"xchunked"), [error(400)]),
    Case("te-chunked-list-twice", post_te(b"chunked, chunked"), [error(400)]),
    Case("te-two-fields", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"0\r\n\r\n", [error(400)]),
    Case("te-obs-folded", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", [error(400)]),
    Case("te-space-before-colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
         [error(400)]),
    Case("te-http10", post_te(b"chunked", version=b"1.0"), [error(400)]),
    Case("connect-with-body", b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\n\r\nabc", [error(400)]),
    Case("valid-then-cl-te", GET + b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
         msg(b"GET", b"/") + [error(400)]),
    # -- chunked bodies ---------------------------------------------------------------
    Case("chunk-size-non-hex", chunked(b"zz\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-size-negative", chunked(b"-1\r\nx\r\n0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-size-overflow", chunked(b"10000000000000000\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-size-trailing-space", chunked(b"3 \r\nabc\r\n0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-size-empty", chunked(b"\r\nabc\r\n0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-ext-space", chunked(b"3 ;a=b\r\nabc\r\n0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-ext-bad-char", chunked(b"3;a b\r\nabc\r\n0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-ext-unterminated-quote", chunked(b'3;a="x\r\nabc\r\n0\r\n\r\n'),
         [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("chunk-data-too-long", chunked(b"3\r\nabcdef\r\n0\r\n\r\n"),
         [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    Case("chunk-missing-crlf", chunked(b"3\r\nabc0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    Case("chunk-lf-terminator", chunked(b"3\r\nabc\n0\r\n\r\n"), [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    Case("chunk-bare-lf-lines", chunked(b"3\nabc\n0\n\n"), [head(b"POST", b"/c", headers=TE), error(400)]),
    Case("last-chunk-bare-lf", chunked(b"3\r\nabc\r\n0\r\n\n"), [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    Case("trailer-content-length", chunked(b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n"),
         [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    Case("trailer-obs-fold", chunked(b"3\r\nabc\r\n0\r\nX: a\r\n b\r\n\r\n"),
         [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    Case("trailer-space-before-colon", chunked(b"3\r\nabc\r\n0\r\nX : a\r\n\r\n"),
         [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    # -- head syntax --------------------------------------------------------------------
    Case("bare-lf-head", b"GET / HTTP/1.1\nHost: a\n\n", [error(400)]),
    Case("bare-lf-one-line", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", [error(400)]),
    Case("bare-lf-final", b"GET / HTTP/1.1\r\nHost: a\r\n\n", [error(400)]),
    Case("cr-in-value", get_with(b"X-A: a\rb"), [error(400)]),
    Case("nul-in-value", get_with(b"X-A: a\x00b"), [error(400)]),
    Case("ctl-in-value", get_with(b"X-A: a\x01b"), [error(400)]),
    Case("del-in-value", get_with(b"X-A: a\x7fb"), [error(400)]),
    Case("vt-in-value", get_with(b"X-A: a\x0bb"), [error(400)]),
    Case("space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", [error(400)]),
    Case("tab-before-colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", [error(400)]),
    Case("empty-name", get_with(b": value"), [error(400)]),
    Case("bad-name-char", get_with(b"X(A): 1"), [error(400)]),
    Case("non-ascii-name", get_with(b"X-\xc3\xa9: 1"), [error(400)]),
    Case("no-colon", get_with(b"Bad Header"), [error(400)]),
    Case("obs-fold", get_with(b"X-Folded: a", b" b"), [error(400)]),
    Case("first-field-starts-with-space", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", [error(400)]),
    Case("target-non-ascii", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-space", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-tab", b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-nul", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-del", b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-relative", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-query-only", b"GET ?x HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-asterisk-get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-asterisk-m-search", b"M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-authority-get", b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("target-absolute-bad-scheme", b"GET h-t://a/ HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("connect-origin-form", b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("method-lowercase", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("method-unknown", b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("method-bad-token", b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("leading-space", b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("tab-separator", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("garbage", b"GARBAGE\r\n\r\n", [error(400)]),
    Case("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", [error(400)]),
    Case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [error(400)]),
    # -- versions -------------------------------------------------------------------------
    Case("http-2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", [error(505)]),
    Case("http-1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", [error(505)]),
    Case("http-3.0", b"GET / HTTP/3.0\r\n\r\n", [error(505)]),
    Case("http-0.9-explicit", b"GET / HTTP/0.9\r\n\r\n", [error(400)]),
    Case("http-0.9-no-version", b"GET /\r\n\r\n", [error(400)]),
    Case("version-lowercase", b"GET / http/1.1\r\nHost: a\r\n\r\n", [error(400)]),
    Case("version-two-digits", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", [error(400)]),
    Case("version-no-dot", b"GET / HTTP/11\r\nHost: a\r\n\r\n", [error(400)]),
    Case("version-trailing-space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", [error(400)]),
    Case("version-x", b"GET / HTTP/1.x\r\nHost: a\r\n\r\n", [error(400)]),
    # -- Host -------------------------------------------------------------------------------
    Case("missing-host", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", [error(400)]),
    Case("duplicate-host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", [error(400)]),
    Case("duplicate-host-http10", b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", [error(400)]),
    # -- limits (SMALL: line 64, 8 fields, field 64) -----------------------------------------
    Case("request-line-over-limit", b"GET /" + b"a" * 51 + b" HTTP/1.1\r\nHost: a\r\n\r\n", [error(414)], SMALL),
    Case("request-line-very-long", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", [error(414)], SMALL),
    Case("request-line-endless", b"GET /" + b"a" * 700, [error(414)], SMALL),
    Case("fields-over-limit", get_with(*[b"X-%d: v" % i for i in range(8)]), [error(431)], SMALL),
    Case("many-fields-endless", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: v\r\n" * 200, [error(431)], SMALL),
    Case("field-over-limit", get_with(b"X-A: " + b"v" * 60), [error(431)], SMALL),
    Case("field-huge", get_with(b"X-A: " + b"v" * 500), [error(431)], SMALL),
    Case("field-endless", b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: " + b"v" * 700, [error(431)], SMALL),
    Case("field-name-endless", b"GET / HTTP/1.1\r\nHost: a\r\nX" + b"x" * 700, [error(431)], SMALL),
    Case("whitespace-endless", b"GET / HTTP/1.1\r\nHost: a\r\nX:" + b" " * 700, [error(431)], SMALL),
    Case("trailers-over-limit", chunked(b"1\r\nx\r\n0\r\n" + b"".join(b"T-%d: v\r\n" % i for i in range(9)) + b"\r\n"),
         [head(b"POST", b"/c", headers=TE), body(b"x"), error(431)], SMALL),
    Case("trailer-endless", chunked(b"1\r\nx\r\n0\r\nT: " + b"v" * 700),
         [head(b"POST", b"/c", headers=TE), body(b"x"), error(431)], SMALL),
    Case("valid-then-endless-field", CL5 + b"GET / HTTP/1.1\r\nX-Endless: " + b"v" * 700,
         msg(b"POST", b"/p", headers=CL5_HEADERS, data=b"hello") + [error(431)], SMALL),
    # -- truncated input (feed_eof in the middle of a request) ------------------------------
    Case("eof-in-head", b"GET / HTTP/1.1\r\nHost: a\r\n", [error(400)]),
    Case("eof-in-request-line", b"GET /inco", [error(400)]),
    Case("eof-in-cl-body", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
         [head(b"POST", b"/", headers=HOST + [(b"content-length", b"10")]), body(b"abc"), error(400)]),
    Case("eof-in-chunked-body", chunked(b"5\r\nhel"), [head(b"POST", b"/c", headers=TE), body(b"hel"), error(400)]),
    Case("eof-before-last-chunk", chunked(b"3\r\nabc\r\n"), [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
    Case("eof-in-trailers", chunked(b"3\r\nabc\r\n0\r\nX: y\r\n"), [head(b"POST", b"/c", headers=TE), body(b"abc"), error(400)]),
]

ALL: list[Case] = VALID + INVALID
