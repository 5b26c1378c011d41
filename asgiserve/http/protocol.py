"""asyncio glue for one HTTP/1.1 connection: transport <-> parser <-> request cycles.

Invariants:
- Requests on a connection are answered strictly in order. Heads that arrive while a
  request is in flight (pipelining) wait in ``queue``; only ``queue[0]`` runs the app.
- Reading pauses while the request bodies buffered on this connection exceed
  BODY_HIGH_WATER or too many pipelined requests are queued, so a client cannot grow
  server memory faster than the app consumes; it resumes as the app reads.
- Writing: ``send`` awaits ``drain()`` while the transport is above its high-water mark.
- A ParseError is answered only after the responses before it, then the connection closes.
- Idle connections are closed by the server's periodic sweep, not a timer per request; so are
  heads that take longer than --timeout-request-header (``head_since``: from the head's first
  byte, or from the accept for a connection's first request; 408) and bodies that stall while
  the server is ready to read them (--timeout-request-body; 408).
- A body over --limit-request-body (declared, or counted as chunks arrive) ends the request
  with 413 before the app can read past the limit.
- Closing is lingering: the server half-closes and reads (and drops) what the client still
  sends for up to LINGER_READ seconds. Closing a socket with unread input makes the kernel
  answer RST, and the client may then lose the response it has not read yet (a 400 for a
  request it is still sending, a 413 for an upload the app refused).
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from ..asgi.http import RequestCycle
from .events import BodyChunk, MessageEnd, ParseError, RequestHead, Upgrade
from .response import CONTINUE_100, ResponseHead, error_response, status_line

if TYPE_CHECKING:
    from ..state import ServerState
    from ..http2.connection import H2Connection
    from ..ws.connection import WebSocket

logger = logging.getLogger("asgiserve.error")

BODY_HIGH_WATER = 256 * 1024
MAX_PIPELINE = 32
LINGER = 10.0  # seconds a closing connection may take to flush before it is aborted
LINGER_READ = 2.0  # seconds a closing connection keeps reading until the client closes too
BIG_WRITE = 16 * 1024  # body size from which framing pieces are written as a list, not joined


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "state", "loop", "transport", "parser", "client", "server", "scheme", "queue",
        "receiving", "buffered", "read_paused", "write_paused", "drain_waiter", "closed",
        "idle_since", "pending_error", "eof", "proxy", "fresh", "linger", "ws", "upgrade_head",
        "pending_upgrade", "tls", "head_since", "h2", "sniff", "sniffed",
    )

    def __init__(self, state: "ServerState") -> None:
        self.state = state
        self.loop = state.loop
        self.transport: Any = None
        self.parser = state.new_parser()
        self.client: Optional[tuple[str, int]] = None
        self.server: Optional[tuple[str, Optional[int]]] = None
        self.scheme = "http"
        self.queue: deque[RequestCycle] = deque()
        self.receiving: Optional[RequestCycle] = None  # the cycle whose body is arriving
        self.buffered = 0
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: Optional[asyncio.Future[None]] = None
        self.closed = False
        self.idle_since = 0.0
        self.pending_error: Optional[ParseError] = None
        self.eof = False  # the client half-closed: answer what is queued, then close
        self.proxy: Any = None  # ProxyHeaders when this peer is a trusted proxy
        self.fresh = True  # accepted, no request seen yet (its first one may be on the way)
        self.linger: Optional[asyncio.TimerHandle] = None  # half-closed, reading until the client closes
        self.ws: Optional["WebSocket"] = None  # after a WebSocket handshake: input goes there
        self.upgrade_head: Optional[RequestHead] = None  # a WebSocket head, until its Upgrade event
        self.pending_upgrade: Optional[Upgrade] = None  # a WebSocket request waiting behind others
        self.tls: Optional[dict[str, Any]] = None  # the ASGI TLS extension, on TLS connections
        self.head_since = 0.0  # when the head being received began (0: none is)
        self.h2: Optional["H2Connection"] = None  # after HTTP/2 was negotiated: input goes there
        self.sniff = False  # h2c: the first bytes may be the HTTP/2 preface (set in connection_made)
        self.sniffed = b""  # a first read shorter than the preface, and a prefix of it

    # -- transport callbacks ----------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # not fatal: only latency suffers
                pass
            self.client = (str(peer[0]), int(peer[1])) if peer else None
            self.server = (str(local[0]), int(local[1])) if local else None
        else:  # unix socket: ASGI wants [path, None] for the server and no client address
            self.server = (local, None) if isinstance(local, str) and local else None
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and self.state.tls is not None:
                self.tls = self.state.tls.extension(ssl_object)
        proxy = self.state.proxy
        if proxy is not None and (self.client is None or proxy.is_trusted(self.client[0])):
            self.proxy = proxy  # decided once per connection, not per request
        self.idle_since = self.loop.time()
        self.state.connections.add(self)
        if self.state.http2 is not None:
            if self.scheme == "http":
                self.sniff = self.state.http2.cleartext
            elif ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                from .. import http2

                http2.start(self, b"", self.state.http2)
        if self.state.shutting_down:
            self.state.close_when_idle(self)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.closed:
            self.state.closing -= 1
        self.closed = True
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        state = self.state
        state.connections.discard(self)
        if not state.accepting:
            state.connection_gone()
        if self.ws is not None:
            self.ws.connection_lost()
        if self.h2 is not None:
            self.h2.connection_lost()
        if self.fresh or self.state.shutting_down:
            self.state.waiting_changed()
        for cycle in self.queue:
            cycle.disconnect()
        self.queue.clear()
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # send() sees `closed` and raises ClientDisconnected
        self.drain_waiter = None

    def eof_received(self) -> bool:
        if self.closed:
            return False  # a lingering close is complete: the transport closes itself
        if self.ws is not None:
            return self.ws.eof_received()
        if self.h2 is not None:
            self.h2.connection_lost()  # HTTP/2 has no half-close: the client is gone
            return False
        events = self.parser.feed_eof()
        if events:
            self.handle_events(events)
        if self.queue and not self.closed:
            # A FIN is either a client that left or one that half-closed after sending its
            # request (some HTTP/1.0 tools do). Keep the write side open so the latter still
            # gets its answer, and tell apps waiting for more input (long polls) that none
            # will come: receive() says http.disconnect once the body is delivered.
            self.eof = True
            for cycle in self.queue:
                cycle.peer_closed()
            return True
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self.h2 is not None:
            self.h2.resume_writing()
        queue = self.queue
        if queue and queue[0].response_state() == 0 and queue[0].task is None and not self.closed:
            queue[0].start()  # held back by cycle_finished while writes were paused
            if self.read_paused and self.buffered <= BODY_HIGH_WATER and len(queue) <= MAX_PIPELINE:
                self.resume_reading()

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            if self.drain_waiter is None:
                self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.ws is not None:
            self.ws.data_received(data)
            return
        if self.h2 is not None:
            self.h2.data_received(data)
            return
        if self.sniff and self.sniff_preface(data):
            return
        self.handle_events(self.parser.feed(data))
        if not self.queue and not self.head_since and not self.closed and self.parser.head_pending():
            # A head has begun: its deadline runs from the accept for the first request.
            self.head_since = self.idle_since if self.fresh else self.loop.time()

    def sniff_preface(self, data: bytes) -> bool:
        """h2c with prior knowledge: hand the connection to HTTP/2 if its first bytes are the
        preface. True when the bytes were taken (by HTTP/2, or kept as a partial preface)."""
        from ..http2 import PREFACE, start

        buf = self.sniffed + data if self.sniffed else data
        n = min(len(buf), len(PREFACE))
        if buf[:n] != PREFACE[:n]:
            self.sniff = False
            if self.sniffed:
                self.sniffed = b""
                self.data_received(buf)  # HTTP/1.1 after all: the parser gets every byte
                return True
            return False
        if n < len(PREFACE):
            self.sniffed = buf
            return True
        self.sniff = False
        self.sniffed = b""
        assert self.state.http2 is not None
        start(self, buf, self.state.http2)
        return True

    # -- events from the parser -------------------------------------------------------
    def handle_events(self, events: list[Any]) -> None:
        for event in events:
            cls = type(event)
            if cls is RequestHead:
                self.on_head(event)
            elif cls is BodyChunk:
                cycle = self.receiving
                if cycle is not None:
                    cycle.feed_body(event.data)
                    if cycle.received > self.state.body_limit:
                        self.on_parse_error(ParseError(413, "Request body too large"))
                        return
            elif cls is MessageEnd:
                cycle = self.receiving
                if cycle is not None:
                    self.receiving = None
                    cycle.end_body()
            elif cls is ParseError:
                self.on_parse_error(event)
                return
            elif cls is Upgrade:
                self.on_upgrade(event)
                return
        if self.buffered > BODY_HIGH_WATER or len(self.queue) > MAX_PIPELINE:
            self.pause_reading()

    def on_head(self, head: RequestHead) -> None:
        if self.closed:
            return
        if self.fresh or self.state.shutting_down:
            self.fresh = False
            self.state.waiting_changed()
        self.head_since = 0.0
        if head.framing > self.state.body_limit:
            self.on_parse_error(ParseError(413, "Request body too large"))
            return
        if head.upgrade:
            if self.state.websockets is not None:
                self.upgrade_head = head  # the parser's Upgrade event follows
                return
            self.state.websocket_refused()
        cycle = RequestCycle(self, head)
        self.receiving = cycle
        self.queue.append(cycle)
        if len(self.queue) == 1:
            cycle.start()

    def on_upgrade(self, event: Upgrade) -> None:
        if self.queue:
            # Pipelined behind requests still being answered: its turn comes in cycle_finished.
            self.pending_upgrade = event
            self.pause_reading()
        else:
            self.start_websocket(event)

    def start_websocket(self, event: Upgrade) -> None:
        from .. import ws

        head, self.upgrade_head = self.upgrade_head, None
        settings = self.state.websockets
        assert head is not None and settings is not None
        ws.start(self, head, event.data, settings)

    def on_parse_error(self, error: ParseError) -> None:
        cycle, self.receiving = self.receiving, None
        if cycle is not None and cycle.discarding:
            cycle = None  # its response is complete (and dequeued): only the stream is broken
        if cycle is not None and self.queue[0] is cycle:
            # The body the app is reading is malformed: it can never get the rest.
            started = cycle.response_started()
            cycle.disconnect()
            if started:
                logger.info("Invalid request body from %s: %s", self.client_label(), error.reason)
                self.close()
            else:
                self.send_error(error.status, error.reason)
                cycle.answered(error.status)
            return
        if cycle is not None:
            self.queue.remove(cycle)  # a queued request whose body is broken never runs
        if self.queue:
            # Answer the requests before it first; stop reading more of a broken stream.
            self.pending_error = error
            self.pause_reading()
        else:
            self.send_error(error.status, error.reason)

    def send_error(self, status: int, reason: str, extra: bytes = b"") -> None:
        logger.info('Invalid request from %s: %d %s', self.client_label(), status, reason)
        if not self.closed:
            self.transport.write(error_response(status, reason, self.state.default_headers, extra))
            if self.state.metrics is not None:
                self.state.metrics.rejected(status)
            self.close()

    # -- the Channel a RequestCycle writes through (asgi/channel.py) -----------------------
    def write_response(self, cycle: RequestCycle, first: bool, body: bytes, more: bool) -> None:
        size = len(body)
        if first:
            # The head: framing (Content-Length, chunked or close) and keep-alive are decided here.
            head: Optional[ResponseHead] = cycle.head_info
            assert head is not None
            status = head.status
            # Shutting down: close after this response, unless requests already wait behind it
            # (pipelined): those are answered first, the last one with Connection: close.
            keep_alive = cycle.keep_alive and not head.close and (not self.state.shutting_down or len(self.queue) > 1)
            if cycle.expect_continue:
                # The client still waits for a 100 Continue we will never send: whether it then
                # sends the body or not is ambiguous, so this connection can't be reused.
                keep_alive = False
            defaults = self.state.default_headers if not head.own_defaults else self.state.defaults_without(head)
            out = [status_line(status), defaults, head.header_bytes]
            if head.bodiless:
                if head.content_length is not None and status == 304:
                    out.append(b"content-length: %d\r\n" % head.content_length)
            elif head.content_length is not None:
                out.append(b"content-length: %d\r\n" % head.content_length)
            elif cycle.is_head:
                if body and not more:  # the app sent the whole body a GET would get: its length is the truth
                    out.append(b"content-length: %d\r\n" % size)
                # else: the GET length is unknown, and claiming 0 would be a lie; none is needed
            elif not more:
                out.append(b"content-length: %d\r\n" % size)
            elif cycle.http10:
                keep_alive = False  # close-delimited
            else:
                cycle.chunked = True
                out.append(b"transfer-encoding: chunked\r\n")
            if not keep_alive:
                out.append(b"connection: close\r\n\r\n")
            elif cycle.http10:
                out.append(b"connection: keep-alive\r\n\r\n")
            else:
                out.append(b"\r\n")
            cycle.keep_alive = keep_alive
        else:
            out = []
        if size and cycle.body_allowed:
            if cycle.chunked:
                out += (b"%x\r\n" % size, body, b"\r\n")
            else:
                out.append(body)
        if not more and cycle.chunked:
            out.append(b"0\r\n\r\n")
        if out:
            if size < BIG_WRITE:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            else:  # uvloop hands the pieces to writev: a large body is not copied to frame it
                self.transport.writelines(out)

    def write_error(self, status: int, message: str, extra: bytes = b"") -> None:
        self.transport.write(error_response(status, message, self.state.default_headers, extra))

    def write_continue(self) -> None:
        self.transport.write(CONTINUE_100)

    def write_early_hint(self, cycle: RequestCycle, links: list[bytes]) -> None:
        if not cycle.http10:  # a 1.0 client may take any status line for the final one (RFC 9110 15.2)
            self.transport.write(b"HTTP/1.1 103 Early Hints\r\n" + b"".join(b"link: %s\r\n" % link for link in links)
                                 + b"\r\n")

    def trailers_possible(self, cycle: RequestCycle) -> bool:
        head = cycle.head_info
        return not cycle.http10 and head is not None and head.content_length is None  # chunked: the last chunk carries them

    def write_trailers(self, cycle: RequestCycle, fields: list[tuple[bytes, bytes]]) -> None:
        if cycle.chunked and not self.closed:
            self.transport.write(b"0\r\n" + b"".join(b"%s: %s\r\n" % field for field in fields) + b"\r\n")

    # -- cycle bookkeeping --------------------------------------------------------------
    def cycle_finished(self, cycle: RequestCycle, keep_alive: bool) -> None:
        """The response of queue[0] is complete; start the next one or close."""
        if self.queue and self.queue[0] is cycle:
            self.queue.popleft()
        if not keep_alive or self.closed:
            self.close()
            return
        if not cycle.body_done or cycle.chunks:
            # The app answered without reading the whole body: release what is buffered (or
            # it would count against this connection's read-pause mark for good) and drop the
            # rest as it arrives.
            cycle.discard_body()
        if self.queue:
            if self.write_paused:
                # A client that does not read its responses gets no more of them computed:
                # the next pipelined request starts once the write buffer drains.
                self.pause_reading()
                return
            self.queue[0].start()
        elif self.pending_error is not None:
            error, self.pending_error = self.pending_error, None
            self.send_error(error.status, error.reason)
            return
        elif self.pending_upgrade is not None:
            event, self.pending_upgrade = self.pending_upgrade, None
            self.start_websocket(event)  # reading stays as the WebSocket wants it
            return
        else:
            if not self.state.accepting and not self.parser.head_pending():
                # At --limit-connections: an idle keep-alive connection makes room for a new one.
                self.close()
                return
            self.idle_since = self.loop.time()
            if self.parser.head_pending():  # pipelined behind the response just finished
                self.head_since = self.idle_since
            # Shutting down, a response that promised keep-alive (its head went out before the
            # stop) leaves the connection open: the server closes it after a short grace for
            # the client's next request (Server._shutdown).
            if self.eof:
                self.close()
                return
        if self.read_paused and self.buffered <= BODY_HIGH_WATER and len(self.queue) <= MAX_PIPELINE:
            self.resume_reading()

    def body_consumed(self, nbytes: int) -> None:
        self.buffered -= nbytes
        if self.read_paused and self.buffered <= BODY_HIGH_WATER // 4 and self.pending_error is None:
            self.resume_reading()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def check_deadlines(self, now: float, head_deadline: float, body_timeout: float) -> None:
        """The sweep's per-connection step for a connection with a head or a body underway."""
        if self.head_since:
            if self.head_since <= head_deadline:
                self.head_since = 0.0
                self.send_error(408, "Request header timeout")
            return
        cycle = self.receiving
        if cycle is None or not body_timeout or self.closed:
            return
        if self.read_paused or cycle.received != cycle.seen:
            cycle.seen, cycle.seen_at = cycle.received, now  # progress, or we are the ones not reading
        elif now - cycle.seen_at >= body_timeout:
            self.on_parse_error(ParseError(408, "Request body timeout"))

    def is_idle(self) -> bool:
        return not self.queue and self.ws is None and self.upgrade_head is None and (self.h2 is None or self.h2.is_idle())

    def close(self) -> None:
        if self.closed:
            return
        if self.h2 is not None:
            self.h2.closing()  # GOAWAY first
        self.closing()
        if not self.eof and self.transport.can_write_eof():
            self.resume_reading()  # input is still read, and dropped (data_received sees `closed`)
            self.closed = True
            self.transport.write_eof()  # FIN once the buffer is flushed
            self.linger = self.loop.call_later(LINGER_READ, self._end_linger)
        else:
            self.closed = True
            self._close_transport()

    def _end_linger(self) -> None:
        self.linger = None
        self._close_transport()

    def _close_transport(self) -> None:
        transport = self.transport
        transport.close()
        if transport.get_write_buffer_size():
            # close() waits for the buffer to flush; a client that never reads would hold
            # the connection forever.
            self.loop.call_later(LINGER, transport.abort)

    def abort(self) -> None:
        """Drop the connection now: what was written can't be completed honestly."""
        if not self.closed:
            self.closing()
        self.closed = True
        self.transport.abort()

    def closing(self) -> None:
        """Closed by the server, not yet gone: it no longer counts toward --limit-connections."""
        state = self.state
        state.closing += 1
        if not state.accepting:
            state.connection_gone()

    def client_label(self) -> str:
        if self.client is None:
            return "unix socket peer"
        return "%s:%d" % self.client
