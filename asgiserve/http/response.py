"""Response serialisation: status lines, header validation, framing decisions. Pure functions.

Everything here runs per response, so constants are encoded once at import and the
per-response work is one pass over the app's headers.
"""
from __future__ import annotations

import http
import re
from email.utils import formatdate
from typing import Any, Iterable, Optional

# Token characters of RFC 9110 §5.6.2; anything else in a header name is a bug in the app.
_bad_name = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]").search
# CR, LF and NUL would let an app (or its user's input) split the response.
_bad_value = re.compile(rb"[\x00\r\n]").search

STATUS_LINES: dict[int, bytes] = {}
for _status in http.HTTPStatus:
    STATUS_LINES[_status.value] = b"HTTP/1.1 %d %s\r\n" % (_status.value, _status.phrase.encode("ascii"))


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status
    return line


class ResponseError(Exception):
    """The app's response is not valid HTTP; it must never reach the wire."""


class ResponseHead:
    """The validated head of an app's response, and what its headers say about framing."""

    __slots__ = ("status", "header_bytes", "content_length", "close", "headers", "own_defaults", "bodiless")

    def __init__(
        self,
        status: int,
        header_bytes: bytes,
        content_length: Optional[int],
        close: bool,
        headers: list[tuple[bytes, bytes]],
        own_defaults: frozenset[bytes] = frozenset(),
    ) -> None:
        self.own_defaults = own_defaults  # "date"/"server" the app set itself: ours are left out
        self.status = status
        self.bodiless = status < 200 or status == 204 or status == 304  # never a body on the wire
        self.header_bytes = header_bytes  # app headers, each "name: value\r\n", minus framing ones
        self.content_length = content_length
        self.close = close  # the app said "Connection: close"
        self.headers = headers  # as given, for the access log


def prepare_head(status: object, headers: Iterable[Any]) -> ResponseHead:
    """Validate an http.response.start message's status and headers.

    Content-Length is parsed (and must be a single non-negative integer); Transfer-Encoding
    and Connection are dropped from the output because the server owns framing and
    connection management, but "Connection: close" is remembered.

    ``headers`` is what the app sent, unchecked: its items are typed ``Any`` so that compiled
    (mypyc) code does not reject a wrong type with its own TypeError before the checks below.
    """
    if type(status) is not int and isinstance(status, int) and not isinstance(status, bool):
        status = int(status)  # http.HTTPStatus and other IntEnums (Starlette passes them through)
    if type(status) is not int or not 200 <= status <= 599:
        if type(status) is int and 100 <= status < 200:
            raise ResponseError(f"informational status {status} cannot be a final response")
        raise ResponseError(f"invalid status {status!r}: must be an int from 200 to 599")
    parts: list[bytes] = []
    content_length: Optional[int] = None
    close = False
    own: set[bytes] = set()
    header_list = []
    for item in headers:
        if type(item) is tuple:
            known = _known_get(item)
            if known is not None:
                header_list.append(item)
                if isinstance(known, bytes):
                    parts.append(known)
                    continue
                if content_length is not None and known != content_length:
                    raise ResponseError(f"invalid Content-Length {item[1]!r}")
                content_length = known
                continue
        name, value = item  # raises on a wrong shape; caught by the caller as a bad message
        if type(name) is not bytes or type(value) is not bytes:
            raise ResponseError(f"header names and values must be bytes, got {item!r}")
        if not name or _bad_name(name):
            raise ResponseError(f"invalid header name {name!r}")
        if _bad_value(value):
            raise ResponseError(f"invalid header value {value!r} for {name!r}")
        header_list.append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            value = value.strip()
            if not value.isdigit() or (content_length is not None and int(value) != content_length):
                raise ResponseError(f"invalid Content-Length {value!r}")
            if content_length is not None:
                continue  # an identical repeat: send it once
            content_length = int(value)
            _remember(item, content_length)
            continue  # re-emitted by the framing code
        if lname == b"transfer-encoding":
            continue  # the server frames the body itself
        if lname == b"connection":
            if value.lower().find(b"close") >= 0:
                close = True
            continue
        line = b"%s: %s\r\n" % (name, value)
        if lname == b"date" or lname == b"server":
            own.add(lname)
        else:
            _remember(item, line)
        parts.append(line)
    return ResponseHead(status, b"".join(parts), content_length, close, header_list, frozenset(own) if own else EMPTY)


EMPTY: frozenset[bytes] = frozenset()

# Fields that frame, route or manage the connection never go in a trailer section (RFC 9110
# 6.5.1); HTTP/2 forbids the connection-specific ones anywhere (RFC 9113 8.2.2).
_NOT_TRAILERS = frozenset((
    b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"proxy-connection", b"upgrade",
    b"te", b"host", b"trailer",
))


def prepare_trailers(headers: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    """Validate an http.response.trailers message's headers: (lower-case name, value) pairs,
    without the fields a trailer section must not carry (dropped, as Transfer-Encoding is from a
    head). Apps' values are Any until checked: compiled (mypyc), a typed loop variable would
    raise its own TypeError first."""
    out = []
    name: Any
    value: Any
    for item in headers:
        name, value = item
        if type(name) is not bytes or type(value) is not bytes:
            raise ResponseError(f"trailer names and values must be bytes, got {item!r}")
        if not name or _bad_name(name):
            raise ResponseError(f"invalid trailer name {name!r}")
        if _bad_value(value):
            raise ResponseError(f"invalid trailer value {value!r} for {name!r}")
        name = name.lower()
        if name not in _NOT_TRAILERS:
            out.append((name, value))
    return out


def prepare_links(links: Iterable[Any]) -> list[bytes]:
    """Validate an http.response.early_hint message's Link field values."""
    out = []
    link: Any
    for link in links:
        if isinstance(link, (bytearray, memoryview)):
            link = bytes(link)
        if type(link) is not bytes:
            raise ResponseError(f"links must be byte strings, got {link!r}")
        if _bad_value(link):
            raise ResponseError(f"invalid link {link!r}")
        link = link.strip()
        if link:
            out.append(link)
    return out

# Apps send the same few headers over and over (content-type, a handful of lengths, cache
# headers): a (name, value) tuple already validated maps to its encoded line, or, for
# Content-Length, to its parsed value. Bounded: emptied when full, so it can't grow with
# per-request values (cookies, etags), and long values are never kept.
_KNOWN_MAX = 4096
_known: dict[tuple[bytes, bytes], "bytes | int"] = {}
_known_get = _known.get


def _remember(item: object, value: "bytes | int") -> None:
    if type(item) is tuple and len(item[1]) <= 200:  # long values are per-response ones
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        _known[item] = value


def default_headers(server_header: bool, date_header: bool, extra: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Server, Date and --header lines, pre-encoded; the server recomputes this once a second."""
    parts = []
    if server_header:
        parts.append(b"server: asgiserve\r\n")
    if date_header:
        parts.append(b"date: %s\r\n" % formatdate(usegmt=True).encode("ascii"))
    for name, value in extra:
        parts.append(b"%s: %s\r\n" % (name, value))
    return b"".join(parts)


def error_response(status: int, message: str, default: bytes, extra: bytes = b"") -> bytes:
    """A complete, self-framed plain-text response that closes the connection.

    ``extra``: more header lines, each ending in CRLF.
    """
    body = message.encode("utf-8") + b"\n"
    return b"".join(
        (
            status_line(status),
            default,
            extra,
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body),
            body,
        )
    )


CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
