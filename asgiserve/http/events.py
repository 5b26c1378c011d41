"""Events a request parser emits; the only vocabulary between the adapters and the core.

Adapters (httptools, h11) turn bytes into these and nothing else: they never decide
keep-alive, write bytes, or know about ASGI. Classes are slotted for the hot path.
"""
from __future__ import annotations

from typing import Optional, Union


class RequestHead:
    """A complete, validated request line plus headers, and what the core needs from them.

    ``headers`` keeps the wire order and repeats; names are lower-cased bytes, values
    are bytes with surrounding whitespace stripped. ``http_version`` is "1.0" or "1.1".
    ``framing`` is the body length (0: none) or ``framing.CHUNKED``. ``connection`` is the
    Connection field's value (several joined with ", "; None when absent),
    ``expect_continue`` says an ``Expect: 100-continue`` field is present, and ``forwarded``
    that a Forwarded or X-Forwarded-For/-Proto field is. They are found in the one pass over
    the fields that checks the framing, so nothing after the parser scans them again.
    ``upgrade`` says the head asks for a WebSocket (``Upgrade: websocket`` and the
    ``upgrade`` Connection option); a parser built to hand such requests over follows the
    head with an ``Upgrade`` event instead of parsing on.
    """

    __slots__ = ("method", "target", "http_version", "headers", "framing", "connection", "expect_continue",
                 "forwarded", "upgrade")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        framing: int = 0,
        connection: Optional[bytes] = None,
        expect_continue: bool = False,
        forwarded: bool = False,
        upgrade: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.framing = framing
        self.connection = connection
        self.expect_continue = expect_continue
        self.forwarded = forwarded
        self.upgrade = upgrade

    def copy(self) -> "RequestHead":
        """The same head with its own headers list (an app may change the one it was given)."""
        return RequestHead(self.method, self.target, self.http_version, list(self.headers), self.framing,
                           self.connection, self.expect_continue, self.forwarded, self.upgrade)

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {self.http_version!r}, {self.headers!r})"


class BodyChunk:
    """Decoded request body bytes (chunked framing already removed)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"BodyChunk({self.data!r})"


class MessageEnd:
    """The current request's body is complete (trailers, if any, are dropped)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MessageEnd()"


class ParseError:
    """The input is not a valid request; the connection must answer ``status`` and close.

    Once an adapter has emitted a ParseError it emits nothing more.
    """

    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"ParseError({self.status}, {self.reason!r})"


class Upgrade:
    """The head just emitted asks for a WebSocket: the bytes after it (``data``, possibly
    empty) and all later input belong to that protocol. The parser emits nothing more."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Upgrade({self.data!r})"


MESSAGE_END = MessageEnd()

Event = Union[RequestHead, BodyChunk, MessageEnd, ParseError, Upgrade]
