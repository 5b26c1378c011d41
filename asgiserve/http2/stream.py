"""One HTTP/2 stream as the ``Channel`` of a RequestCycle (asgi/channel.py).

The cycle is the same one HTTP/1.1 requests run (scope, ASGI order, Content-Length accounting,
access log); this object turns its writes into HEADERS and DATA frames on one stream.

Invariants:
- Response bytes wait in ``pending`` until the peer's stream and connection windows allow them
  (the connection's ``pump``); ``write_paused`` is true while more than WRITE_HIGH_WATER waits
  there or the transport is paused, so an app's ``send()`` waits for the client's window.
- Request body bytes are acknowledged (WINDOW_UPDATE) only as the app receives them
  (``body_consumed``), so a slow app keeps the client within its window; bytes nobody will
  read (response done, stream reset) are acknowledged as they arrive.
- END_STREAM or RST_STREAM goes out exactly once; after it the stream leaves the connection's
  table, and a request body still arriving is cut short with RST_STREAM(NO_ERROR) (RFC 9113 8.1).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from h2.errors import ErrorCodes

if TYPE_CHECKING:
    from ..asgi.http import RequestCycle
    from .connection import H2Connection

WRITE_HIGH_WATER = 64 * 1024
# Connection-specific fields (RFC 9113 8.2.2) and Content-Length, which is re-emitted from the
# response's framing decision; apps written for HTTP/1.1 send the former freely.
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
                        b"content-length"))
STATUS = {code: b"%d" % code for code in range(100, 600)}
_defaults_cache: dict[bytes, list[tuple[bytes, bytes]]] = {}


def header_list(encoded: bytes) -> list[tuple[bytes, bytes]]:
    """The server's pre-encoded default header lines ("name: value\\r\\n"...) as pairs; cached, as
    they change once a second."""
    pairs = _defaults_cache.get(encoded)
    if pairs is None:
        pairs = []
        for line in encoded.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b":")
                pairs.append((name.strip().lower(), value.strip()))
        if len(_defaults_cache) > 8:
            _defaults_cache.clear()
        _defaults_cache[encoded] = pairs
    return pairs


class H2Stream:
    __slots__ = (
        "connection", "sid", "state", "loop", "server", "client", "scheme", "tls", "proxy", "transport",
        "buffered", "idle_since", "cycle", "pending", "pending_size", "end_pending", "ended", "reset",
        "waiter", "finished", "started", "trailers",
    )

    def __init__(self, connection: "H2Connection", sid: int) -> None:
        proto = connection.proto
        self.connection = connection
        self.sid = sid
        self.state = proto.state
        self.loop = proto.loop
        self.server = proto.server
        self.client = proto.client
        self.scheme = proto.scheme
        self.tls = proto.tls
        self.proxy = proto.proxy
        self.transport: Any = None  # no native sendfile: bytes go through frames
        self.buffered = 0
        self.idle_since = 0.0
        self.cycle: Optional["RequestCycle"] = None
        self.pending: deque[bytes | memoryview] = deque()  # views: the rest of a body cut into frames
        self.pending_size = 0
        self.end_pending = False  # END_STREAM goes out after `pending`
        self.ended = False  # END_STREAM sent
        self.reset = False  # RST_STREAM sent or received (or the connection is gone)
        self.waiter: Optional[asyncio.Future[None]] = None
        self.finished = False  # the cycle said its response is complete
        self.started = False  # the app was started (not queued behind the connection's limit)
        self.trailers: Optional[list[tuple[bytes, bytes]]] = None  # a HEADERS frame to end with, after `pending`

    # -- Channel --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.reset or self.connection.proto.closed

    @property
    def write_paused(self) -> bool:
        return self.pending_size > WRITE_HIGH_WATER or self.connection.proto.write_paused

    async def drain(self) -> None:
        while self.write_paused and not self.closed:
            self.connection.waiting_for_peer()
            if self.waiter is None:
                self.waiter = self.loop.create_future()
            await self.waiter

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def write_response(self, cycle: "RequestCycle", first: bool, body: bytes, more: bool) -> None:
        if self.closed:
            return  # reset by the peer: the app's next send() raises ClientDisconnected
        if first:
            headers = self.response_headers(cycle, body, more)
        if not more and cycle.remaining:
            more = True  # shorter than its Content-Length: no END_STREAM; the cycle's abort() resets it
        if not cycle.body_allowed:
            body = b""
        if first:
            end = not more and not body
            self.connection.h2.send_headers(self.sid, headers, end_stream=end)
            if end:
                self.ended = True
                self.connection.stream_done(self)
                self.connection.flush_soon()
                return
        self.queue(body, more)

    def response_headers(self, cycle: "RequestCycle", body: bytes, more: bool) -> list[tuple[bytes, bytes]]:
        head = cycle.head_info
        assert head is not None
        state = self.state
        defaults = state.default_headers if not head.own_defaults else state.defaults_without(head)
        out = [(b":status", STATUS[head.status])]
        out += header_list(defaults)
        for name, value in head.headers:
            name = name.lower()
            if name not in HOP_BY_HOP:
                out.append((name, value))
        length: Optional[int] = None
        if head.bodiless:
            if head.status == 304:
                length = head.content_length
        elif head.content_length is not None:
            length = head.content_length
        elif not more and (body or not cycle.is_head):
            length = len(body)  # for HEAD: the body a GET would get; else unknown, and not claimed
        if length is not None:
            out.append((b"content-length", b"%d" % length))
        return out

    def queue(self, body: bytes, more: bool) -> None:
        if body:
            self.pending.append(body)
            self.pending_size += len(body)
        if not more:
            self.end_pending = True
        self.connection.pump(self)
        self.connection.flush_soon()

    def write_error(self, status: int, message: str, extra: bytes = b"") -> None:
        if self.closed or self.ended:
            return
        body = message.encode("utf-8") + b"\n"
        headers = [(b":status", STATUS[status])]
        headers += header_list(self.state.default_headers)
        if extra:
            headers += header_list(extra)
        headers += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        self.connection.h2.send_headers(self.sid, headers)
        self.queue(body, False)

    def write_continue(self) -> None:
        if not self.closed:
            self.connection.h2.send_headers(self.sid, [(b":status", b"100")])
            self.connection.flush()

    def write_early_hint(self, cycle: "RequestCycle", links: list[bytes]) -> None:
        if not self.closed and not self.ended:
            self.connection.h2.send_headers(self.sid, [(b":status", b"103")] + [(b"link", link) for link in links])
            self.connection.flush()

    def trailers_possible(self, cycle: "RequestCycle") -> bool:
        return True

    def write_trailers(self, cycle: "RequestCycle", fields: list[tuple[bytes, bytes]]) -> None:
        if not self.closed:
            self.trailers = fields or None  # a trailing HEADERS frame with END_STREAM, after the DATA before it
            self.queue(b"", False)

    def body_consumed(self, nbytes: int) -> None:
        self.buffered -= nbytes
        if nbytes:
            self.connection.acknowledge(self.sid, nbytes)

    def cycle_finished(self, cycle: "RequestCycle", keep_alive: bool) -> None:
        self.finished = True
        if not cycle.body_done or cycle.chunks:
            cycle.discard_body()  # acknowledges what the app never read; later DATA is acknowledged on arrival
        if not self.ended and not self.end_pending and not self.reset:
            self.abort()  # defensive: a cycle that ends always wrote its last message or aborted
        self.connection.stream_finished(self)

    def abort(self) -> None:
        """A response that can't be completed honestly: RST_STREAM(INTERNAL_ERROR)."""
        if not self.reset and not self.ended:
            self.send_reset(ErrorCodes.INTERNAL_ERROR)

    # -- used by the connection ------------------------------------------------------------
    def send_reset(self, code: int) -> None:
        self.connection.h2.reset_stream(self.sid, code)
        self.closed_by_reset()
        self.connection.flush()

    def closed_by_reset(self) -> None:
        """The stream is gone (reset either way, or the connection is lost): nothing more is sent."""
        self.reset = True
        self.pending.clear()
        self.pending_size = 0
        self.end_pending = False
        self.wake()
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnect()
        self.connection.stream_done(self)
