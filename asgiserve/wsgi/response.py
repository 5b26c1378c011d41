"""start_response() argument checks: PEP 3333 types, then what HTTP allows on the wire.

A bad status or header raises here, inside the app's call to start_response, so it becomes
a 500 with a log line (or the app's own error page) and never reaches the client.
Runs on the app's thread; valid names and statuses are cached (bounded) for the hot path.
"""
from __future__ import annotations

import re
from typing import Any

_token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_bad_value = re.compile(r"[\x00\r\n]").search
_status = re.compile(r"([1-9][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?\Z").match

_STATUS_CACHE: dict[str, int] = {}
_NAME_CACHE: dict[str, bytes] = {}
_PAIR_CACHE: dict[Any, tuple[bytes, bytes]] = {}  # (name, value) -> checked and encoded
_CACHE_MAX = 512


def parse_status(status: Any) -> int:
    """'200 OK' -> 200. The code must be a final status (200-599) the server can send."""
    code = _STATUS_CACHE.get(status) if type(status) is str else None
    if code is not None:
        return code
    if not isinstance(status, str):
        raise TypeError(f"WSGI status must be a str like '200 OK', got {type(status).__name__}")
    match = _status(status)
    if match is None or not status.isascii() and not _latin1_ok(status):
        raise ValueError(f"invalid WSGI status {status!r}: expected '<3-digit code> <reason>'")
    code = int(match.group(1))
    if not 200 <= code <= 599:
        raise ValueError(f"invalid WSGI status {status!r}: a final response needs a code from 200 to 599")
    if len(_STATUS_CACHE) < _CACHE_MAX:
        _STATUS_CACHE[status] = code
    return code


def _latin1_ok(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def encode_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """PEP 3333 header list -> ASGI header pairs, rejecting anything that could split a response."""
    if type(headers) is not list:
        raise TypeError(f"WSGI response headers must be a list, got {type(headers).__name__}")
    out = []
    names = _NAME_CACHE
    pairs = _PAIR_CACHE
    for item in headers:
        try:
            pair = pairs.get(item) if type(item) is tuple else None
        except TypeError:  # unhashable inside: the checks below say what is wrong with it
            pair = None
        if pair is not None:  # the same (str, str) header as an earlier response: already checked
            out.append(pair)
            continue
        if type(item) is not tuple or len(item) != 2:
            raise TypeError(f"each WSGI response header must be a (name, value) tuple, got {item!r}")
        name, value = item
        if not isinstance(value, str):
            raise TypeError(f"WSGI header value for {name!r} must be a str, got {type(value).__name__}")
        bname = names.get(name) if type(name) is str else None
        if bname is None:
            if not isinstance(name, str):
                raise TypeError(f"WSGI header name must be a str, got {type(name).__name__}")
            if not _token(name):
                raise ValueError(f"invalid WSGI header name {name!r}")
            bname = name.encode("ascii")
            if len(names) < _CACHE_MAX:
                names[name] = bname
        if _bad_value(value):
            raise ValueError(f"invalid WSGI header value {value!r} for {name!r}: CR, LF and NUL are not allowed")
        try:
            bvalue = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"WSGI header value {value!r} for {name!r} is not latin-1") from None
        pair = (bname, bvalue)
        if len(pairs) < _CACHE_MAX and type(name) is str and type(value) is str:
            pairs[item] = pair  # exact str types only: a subclass may compare equal yet encode differently
        out.append(pair)
    return out


def content_length(headers: list[tuple[bytes, bytes]]) -> "int | None":
    for name, value in headers:
        if len(name) == 14 and name.lower() == b"content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None
