"""RFC 9112 request validation shared by both parser adapters.

``inspect_head`` is called by both adapters on every completed head and decides the body
framing, so a request reaches the core only if it is unambiguously framed. The decisions
(identical on httptools and h11; the shared corpus in tests/corpus pins each one):

* Version: HTTP/1.0 and HTTP/1.1 only. A well-formed ``HTTP/x.y`` other than those -> 505;
  HTTP/0.9 (explicit, or a request line without a version) -> 400 (it has no HTTP/1 framing).
* Method: one of ``METHODS`` (the registered methods llhttp knows, upper case). Anything else,
  including lower-case ``get``, -> 400: httptools cannot parse other methods, so neither may h11.
* Target: origin-form (``/...``); absolute-form (``scheme://authority[/?...]``); ``*`` only with
  OPTIONS; authority-form (``host:port``) only with, and required for, CONNECT. Every byte must
  be visible ASCII (both parsers enforce that at the byte level). Anything else -> 400.
* Host: HTTP/1.1 needs exactly one Host field, HTTP/1.0 at most one -> else 400 (RFC 9112 3.2).
  Its value must be a ``uri-host[:port]`` (RFC 3986: an IP literal in brackets, or reg-name
  characters incl. IPv4 and percent-escapes; the port digits only) or empty -> else 400.
* Content-Length: at most one field line; its value is 1+ ASCII digits (no sign, space, hex,
  comma list, even "3, 3") below 2**64 -> else 400.
* Transfer-Encoding: exactly one field line whose value is ``chunked`` (any case). A list such
  as ``gzip, chunked`` or ``chunked, identity``, any other coding, TE together with
  Content-Length, or TE in an HTTP/1.0 request (RFC 9112 6.1: faulty framing) -> 400. RFC 9112
  suggests 501 for codings we do not implement; we answer 400 for every TE problem since the
  body cannot be framed either way and the connection closes.
* CONNECT is delivered as an ordinary request without a body (asgiserve serves ``http`` only and
  never tunnels); a CONNECT with a body (Content-Length > 0 or Transfer-Encoding) -> 400.
  Bytes after a CONNECT head are parsed as the next request.
* ``Upgrade``: a head with ``Upgrade: websocket`` and the ``upgrade`` Connection option (tokens
  in any case, in lists) is marked ``upgrade``; a parser built to hand WebSockets over stops
  after it (see events.Upgrade), whatever its method or version: the WebSocket layer answers an
  invalid handshake. Any other Upgrade is ignored: the request is delivered with its body and
  parsing continues.

Byte-level rules, enforced natively by llhttp and by the h11 adapter through ``check_raw_head``
(h11 alone is laxer): lines end in CRLF (a bare LF anywhere in a head -> 400); no obs-fold or
other line starting with whitespace; header names are tokens directly followed by ``:``;
values contain no CTL except HTAB (CR, LF, NUL, DEL included). Multiple spaces between the
request-line elements are accepted (RFC 9112 3 allows it and llhttp does), tabs are not.
Leading empty lines before a request line are skipped (RFC 9112 2.2).

Chunked bodies: chunk-size is 1+ hex digits below 2**64 (leading zeros allowed), directly
followed by optional extensions ``;name[=token|"quoted"]`` (no whitespace anywhere) and CRLF;
chunk data must be followed by exactly CRLF. Trailer fields are parsed like header fields,
counted against the same limits and dropped; a Content-Length or Transfer-Encoding trailer
-> 400.
"""
from __future__ import annotations

import re

from .events import RequestHead
from .limits import REQUEST_LINE_OVERHEAD, HeadLimits, Reject

METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
_METHOD_PREFIXES = frozenset(m[:i] for m in METHODS for i in range(len(m) + 1))

CHUNKED = -1
MAX_LENGTH = 2**64 - 1

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
# Authority characters llhttp accepts in absolute-form (no '/', '?' or '#').
_AUTHORITY = rb"\x21\x24-\x2e\x30-\x3b\x3d\x40-\x5b\x5d\x5f\x61-\x7a\x7e"
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z]+://[" + _AUTHORITY + rb"]+(?:[/?][\x21-\x7e]*)?")
_AUTHORITY_FORM = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+):[0-9]+")
_VISIBLE = re.compile(rb"[\x21-\x7e]*")
_HOST_VALUE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
                         rb"|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_VALID_HOSTS: dict[bytes, bool] = {}  # bounded cache: a few names repeat on every request
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT, _FORWARDED, _UPGRADE = 1, 2, 3, 4, 5, 6, 7
# The fields the server itself reads: one dict lookup per field line classifies them all.
_SERVER_FIELDS = {
    b"host": _HOST, b"content-length": _CONTENT_LENGTH, b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION, b"expect": _EXPECT,
    b"forwarded": _FORWARDED, b"x-forwarded-for": _FORWARDED, b"x-forwarded-proto": _FORWARDED,
    b"upgrade": _UPGRADE,
}


def inspect_head(
    method: bytes, target: bytes, version: str, headers: list[tuple[bytes, bytes]], limits: HeadLimits
) -> RequestHead:
    """Validate a complete head and return it as the event the core gets, its framing decided.

    ``headers`` are (lower-cased name, stripped value) in wire order. Raises ``Reject``.
    """
    # The order is byte order where it matters: llhttp rejects a method, a target and a long
    # request line as it reads them, and the head-size limits are checked as a head arrives; the
    # version is judged once the head is whole. So the answer does not depend on how it was split.
    if method not in METHODS:
        raise Reject(400, "Invalid method")
    if target[:1] != b"/" or method == b"CONNECT":
        _check_target_form(method, target)
    if len(target) > limits.target_fast_max:
        limits.check_request_line(method, target)
    if len(headers) > limits.fields:
        raise Reject(431, "Too many header fields")
    field_max = limits.field_size - 2  # same rule as HeadLimits.check_field, in this one pass
    hosts = 0
    length = encoding = connection = upgrade = None
    expect_continue = forwarded = False
    get = _SERVER_FIELDS.get
    for name, value in headers:
        if len(name) + len(value) > field_max:
            raise Reject(431, "Header field too large")
        kind = get(name)
        if kind is not None:
            if kind == _HOST:
                hosts += 1
                if value not in _VALID_HOSTS:
                    check_host(value)
            elif kind == _CONTENT_LENGTH:
                if length is not None:
                    raise Reject(400, "Multiple Content-Length fields")
                if encoding is not None:  # here, not after the version check: llhttp refuses it at this field
                    raise Reject(400, "Both Content-Length and Transfer-Encoding")
                length = value
            elif kind == _TRANSFER_ENCODING:
                if encoding is not None:
                    raise Reject(400, "Multiple Transfer-Encoding fields")
                if length is not None:
                    raise Reject(400, "Both Content-Length and Transfer-Encoding")
                encoding = value
            elif kind == _CONNECTION:
                connection = value if connection is None else connection + b", " + value
            elif kind == _EXPECT:
                if value.lower() == b"100-continue":
                    expect_continue = True
            elif kind == _UPGRADE:
                upgrade = value if upgrade is None else upgrade + b", " + value
            else:
                forwarded = True
    if version != "1.1" and version != "1.0":
        if version == "0.9":
            raise Reject(400, "HTTP/0.9 is not supported")
        raise Reject(505, "HTTP version not supported")
    if hosts != 1 and (hosts or version == "1.1"):
        raise Reject(400, "Missing Host field" if not hosts else "Multiple Host fields")
    if encoding is not None:
        if version == "1.0":
            raise Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        if length is not None:
            raise Reject(400, "Both Content-Length and Transfer-Encoding")
        if encoding.lower() != b"chunked":
            raise Reject(400, "Unsupported Transfer-Encoding")
        if method == b"CONNECT":
            raise Reject(400, "CONNECT with a body")
        framing = CHUNKED
    elif length is not None:
        if not length.isdigit() or len(length) > 20:
            raise Reject(400, "Invalid Content-Length")
        size = int(length)
        if size > MAX_LENGTH:
            raise Reject(400, "Invalid Content-Length")
        if size and method == b"CONNECT":
            raise Reject(400, "CONNECT with a body")
        framing = size
    else:
        framing = 0
    websocket = (
        upgrade is not None and connection is not None
        and has_token(upgrade, b"websocket") and has_token(connection, b"upgrade")
    )
    return RequestHead(method, target, version, headers, framing, connection, expect_continue, forwarded, websocket)


def check_host(value: bytes) -> None:
    if _HOST_VALUE.fullmatch(value) is None:
        raise Reject(400, "Invalid Host field")
    if len(_VALID_HOSTS) >= 1024:
        _VALID_HOSTS.clear()
    _VALID_HOSTS[value] = True


def has_token(value: bytes, token: bytes) -> bool:
    """Whether the comma-separated list ``value`` holds ``token`` (lower case), in any case."""
    return any(part.strip(b" \t").lower() == token for part in value.split(b","))


def _check_target_form(method: bytes, target: bytes) -> None:
    if method == b"CONNECT":
        if _AUTHORITY_FORM.fullmatch(target) is None:
            raise Reject(400, "Invalid CONNECT target")
    elif target == b"*":
        if method != b"OPTIONS":
            raise Reject(400, "Asterisk target is only for OPTIONS")
    elif _ABSOLUTE_FORM.fullmatch(target) is None:
        raise Reject(400, "Invalid request target")


# -- chunked bodies -------------------------------------------------------------------

_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_EXT_VALUE = rb"(?:[" + _TCHAR + rb"]*|" + _QUOTED + rb")"
# llhttp's extension grammar: ';' then a name (may be empty only if '=' follows) [= value].
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:;(?:[" + _TCHAR + rb"]+(?:=" + _EXT_VALUE + rb")?|=" + _EXT_VALUE + rb"))*"
)


def parse_chunk_size(line: bytes) -> int:
    """Size of a chunk from its size line (CRLF removed). Raises ``Reject``."""
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        raise Reject(400, "Invalid chunk size line")
    size = int(match.group(1), 16)
    if size > MAX_LENGTH:
        raise Reject(400, "Chunk size overflow")
    return size


_FIELD_LINE = re.compile(rb"([" + _TCHAR + rb"]+):([\t\x20-\x7e\x80-\xff]*)")


def parse_field_line(line: bytes) -> tuple[bytes, bytes]:
    """(lower-cased name, stripped value) of one field line (CRLF removed). Raises ``Reject``."""
    match = _FIELD_LINE.fullmatch(line)
    if match is None:
        raise Reject(400, "Invalid header field line")
    return match.group(1).lower(), match.group(2).strip(b" \t")


def check_trailer(name: bytes) -> None:
    if name == b"content-length" or name == b"transfer-encoding":
        raise Reject(400, "Framing field in trailers")


# -- byte-level checks for the h11 adapter (llhttp does these natively) --------------------

_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# method, target, version; runs of spaces between them are accepted, as llhttp does.
REQUEST_LINE = re.compile(rb"([" + _TCHAR + rb"]+) +([\x21-\x7e]+) +HTTP/([0-9]\.[0-9])")
_VERSION = b"HTTP/0.0"


def check_raw_head(head: bytes) -> None:
    """Rules h11 does not enforce itself: CRLF only, no obs-fold, no CTL in values."""
    if head.count(b"\n") != head.count(b"\r\n"):
        raise Reject(400, "Bare LF in request head")
    if head.find(b"\n ") >= 0 or head.find(b"\n\t") >= 0:  # not `in`: see split_target
        raise Reject(400, "Obsolete line folding")
    if _CTL.search(head) is not None:
        raise Reject(400, "Control character in request head")


def check_request_line_prefix(line: bytes, complete: bool, limits: HeadLimits) -> None:
    """Errors llhttp reports as soon as it reads them, for a request line (CRLF removed) that
    may still be incomplete. Lets the h11 adapter answer a bad line without waiting."""
    method, space, rest = line.partition(b" ")
    if not space:
        if method not in _METHOD_PREFIXES or (complete and method not in METHODS):
            raise Reject(400, "Invalid method")
        return
    if method not in METHODS:
        raise Reject(400, "Invalid method")
    target, space, version = rest.lstrip(b" ").partition(b" ")
    if target:
        if target[:1] not in b"/*" and not target[:1].isalpha() and method != b"CONNECT":
            raise Reject(400, "Invalid request target")
        if _VISIBLE.fullmatch(target) is None:
            raise Reject(400, "Invalid request target")
        if len(method) + len(target) + REQUEST_LINE_OVERHEAD > limits.line:
            raise Reject(414, "Request line too long")
    if complete:
        if REQUEST_LINE.fullmatch(line) is None:
            raise Reject(400, "Invalid request line")
    elif space:
        version = version.lstrip(b" ")
        expected = _VERSION[: len(version)]
        if len(version) > len(_VERSION) or version.translate(_DIGITS_TO_ZERO) != expected:
            raise Reject(400, "Invalid HTTP version")


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def check_field_prefix(line: bytes) -> None:
    """Errors llhttp reports as soon as it reads them, in a field line that may be incomplete."""
    name, colon, value = line.partition(b":")
    if (name or colon) and _FIELD_LINE.fullmatch(name + b":" + value) is None:
        raise Reject(400, "Invalid header field line")
