"""What a RequestCycle needs from the connection it answers on: the ``Channel`` interface.

A cycle (asgi/http.py) owns the ASGI side of one request: scope, message order, body
accounting against Content-Length, the access log. How the response goes on the wire is the
channel's business: ``http.protocol.HttpProtocol`` frames it as HTTP/1.1 (Content-Length or
chunked, keep-alive), ``http2.stream.H2Stream`` as HEADERS and DATA frames on one stream under
flow control. Apps, the WSGI bridge, limits, metrics and the access log therefore run the same
code on both.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    import asyncio

    from .http import RequestCycle


class Channel(Protocol):
    """The connection-side half of a request cycle (structural: nothing inherits it)."""

    state: Any  # the ServerState
    loop: "asyncio.AbstractEventLoop"
    transport: Any  # for native sendfile only: None where bytes are not written straight to a socket
    server: Optional[tuple[str, Optional[int]]]
    client: Optional[tuple[str, int]]
    scheme: str
    tls: Optional[dict[str, Any]]
    proxy: Any
    buffered: int  # request body bytes received and not yet handed to the app
    idle_since: float

    @property
    def closed(self) -> bool:
        """Nothing more can be written for this request (the client left, or the stream was reset)."""

    @property
    def write_paused(self) -> bool:
        """``drain()`` would wait: the peer is not taking bytes as fast as they are written."""

    async def drain(self) -> None:
        """Wait until writing may go on (or the channel is closed)."""

    def write_response(self, cycle: "RequestCycle", first: bool, body: bytes, more: bool) -> None:
        """Write ``body`` (preceded, when ``first``, by the head in ``cycle.head_info``), framed as
        this protocol frames it; ``more=False`` ends the response. ``body`` is not sent when
        ``cycle.body_allowed`` is false (HEAD, 204, 304), but its length may still be declared."""

    def write_error(self, status: int, message: str, extra: bytes = b"") -> None:
        """Answer the request with a complete plain-text error response. ``extra``: more
        header lines, each "name: value\\r\\n"."""

    def write_continue(self) -> None:
        """Send ``100 Continue``: the app is reading a body the client waits to send."""

    def write_early_hint(self, cycle: "RequestCycle", links: list[bytes]) -> None:
        """Send ``103 Early Hints`` with these Link field values, before the final head (where the
        protocol and the client allow it; else nothing)."""

    def trailers_possible(self, cycle: "RequestCycle") -> bool:
        """Whether fields can follow ``cycle``'s response body (its head is in ``cycle.head_info``)."""

    def write_trailers(self, cycle: "RequestCycle", fields: list[tuple[bytes, bytes]]) -> None:
        """End a response whose last body went out with ``more=True`` (its trailers were due):
        the trailer ``fields`` (lower-case names), then the end of the message."""

    def body_consumed(self, nbytes: int) -> None:
        """The app took ``nbytes`` of the request body: the peer may send more."""

    def cycle_finished(self, cycle: "RequestCycle", keep_alive: bool) -> None:
        """The response is complete (or given up); ``keep_alive`` false asks for the connection
        (HTTP/1.1) to close after it."""

    def abort(self) -> None:
        """The response can't be completed honestly (truncated): drop it now."""
