"""The parser backend interface: bytes in, events out, identical on httptools and h11.

Contract every backend keeps (tests/unit/test_corpus.py and test_parsers.py pin it):

* ``feed(data)`` returns the events completed by ``data``, in order: ``RequestHead``, then
  zero or more ``BodyChunk`` (decoded, never empty), then ``MessageEnd``, for each request;
  pipelined requests follow each other in the same list. Chunk boundaries depend on how the
  bytes arrived; everything else does not.
* A ``RequestHead`` is well framed (framing.inspect_head accepted it): the core may trust it.
* Invalid input yields one ``ParseError(status, reason)`` (400, 414, 431 or 505) as the last
  event; after it both methods return ``[]`` forever.
* ``feed_eof()`` returns ``[]`` between requests and ``[ParseError(400, ...)]`` in the middle
  of one. ``head_pending()`` says whether bytes of an incomplete head are buffered.
* With ``upgrades`` on, a head marked ``upgrade`` (a WebSocket request) is followed by one
  ``Upgrade`` event carrying the bytes after it, and nothing more: the rest of the stream is
  not HTTP. With it off, such a head is an ordinary request.
* Parsers never decide keep-alive, write bytes or know ASGI. One parser per connection.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable, Protocol

from ..errors import ConfigError
from .events import Event
from .limits import HeadLimits


class RequestParser(Protocol):
    def feed(self, data: bytes) -> list[Event]: ...

    def feed_eof(self) -> list[Event]: ...

    def head_pending(self) -> bool:
        """Whether part of a request head has arrived and its end has not (for its deadline)."""
        ...


def httptools_available() -> bool:
    return importlib.util.find_spec("httptools") is not None


def resolve_http(kind: str) -> str:
    """Map the --http option to a concrete backend: "httptools" or "h11"."""
    if kind == "auto":
        return "httptools" if httptools_available() else "h11"
    if kind == "httptools":
        if not httptools_available():
            raise ConfigError(
                "--http httptools was requested but httptools is not installed "
                "(pip install httptools), or use --http h11"
            )
        return kind
    if kind == "h11":
        return kind
    raise ConfigError(f"Unknown --http value {kind!r}; expected auto, httptools or h11")


def parser_factory(kind: str, config: Any, upgrades: bool = False) -> Callable[[], RequestParser]:
    """A zero-argument callable building one parser per connection (limits computed once)."""
    limits = HeadLimits.from_config(config)
    if kind == "httptools":
        from .parse_httptools import HttptoolsParser

        return lambda: HttptoolsParser(limits, upgrades)
    if kind == "h11":
        from .parse_h11 import H11Parser

        return lambda: H11Parser(limits, upgrades)
    raise ConfigError(f"Unknown parser {kind!r}; call resolve_http() first")


def make_parser(kind: str, config: Any, upgrades: bool = False) -> RequestParser:
    """One parser for ``kind`` ("httptools" or "h11", already resolved)."""
    return parser_factory(kind, config, upgrades)()
