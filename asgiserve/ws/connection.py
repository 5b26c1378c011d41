"""One WebSocket after the upgrade: the ASGI ``websocket`` cycle over websockets' sans-I/O frames.

The HTTP protocol object keeps the transport: it routes bytes, EOF and connection loss here
once a valid handshake head arrived, and lends its write backpressure (``drain``) and its
lingering close. Frames are parsed and serialised by ``websockets.ServerProtocol`` (masking,
control frames, close handshake, permessage-deflate, the size limit checked on the frame
header); this module adds what the library leaves to its caller: message assembly with
incremental UTF-8 validation, keepalive pings, flow control both ways, and the ASGI rules.

Invariants:
- Before ``websocket.accept`` nothing is parsed as frames: bytes that came with or after the
  handshake wait (up to PENDING_LIMIT, then reading pauses) and are fed once the 101 is
  written, so a first frame sent in the handshake's packet is kept. Reading goes on below that,
  so a client leaving while the app decides is seen (disconnect 1006).
- Reading pauses while the app has ``max_queue`` messages it has not received.
- ``send`` waits while the transport is above its high-water mark.
- After a close frame went out (or came in), the connection ends within CLOSE_TIMEOUT.
"""
from __future__ import annotations

import asyncio
import codecs
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional, Sequence

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from ..asgi.http import RETRY_AFTER, ClientDisconnected, RequestCycle, split_target
from ..http.response import error_response
from .fastpath import apply_mask, frame_header, split_messages
from .handshake import Handshake, accept_response, negotiate

if TYPE_CHECKING:
    from ..http.events import RequestHead
    from ..http.protocol import HttpProtocol
    from . import WebSocketSettings

logger = logging.getLogger("asgiserve.error")
access_logger = logging.getLogger("asgiserve.access")

CLOSE_TIMEOUT = 10.0  # seconds the peer gets to answer our close frame
PENDING_LIMIT = 64 * 1024  # input buffered before the accept; reading pauses beyond it
BIG_WRITE = 16 * 1024  # from this size a message is written after its header, not joined to it
TEXT, BINARY, CONT, PING, PONG, CLOSE = (
    Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PING, Opcode.PONG, Opcode.CLOSE,
)
# ASGI side of the connection.
CONNECTING, ACCEPTED, CLOSED = 0, 1, 2
_utf8 = codecs.getincrementaldecoder("utf-8")


class WebSocket:
    __slots__ = (
        "proto", "loop", "state", "settings", "head", "handshake", "scope", "conn", "phase", "messages",
        "waiters", "pending", "fragments", "fragment_size", "decoder", "text", "connect_sent", "close_code",
        "close_reason", "task", "denial", "ping_handle", "ping_payload", "pong_handle", "close_handle",
        "start_time", "accepted_at", "log_scope", "app_closed", "reading_held", "plain",
        "partial", "partial_size", "partial_need",
    )

    def __init__(self, proto: "HttpProtocol", head: "RequestHead", handshake: Handshake,
                 settings: "WebSocketSettings") -> None:
        self.proto = proto
        self.loop = proto.loop
        self.state = proto.state
        self.settings = settings
        self.head = head
        self.handshake = handshake
        self.scope: Any = None
        self.conn: Optional[FrameProtocol] = None
        self.phase = CONNECTING
        self.messages: deque[dict[str, Any]] = deque()
        self.waiters: list[Any] = []
        self.pending = bytearray()  # input that arrived before the accept
        self.fragments: list[Any] = []  # of the message in progress: bytes, or str for text
        self.fragment_size = 0
        self.decoder: Any = None  # incremental UTF-8 decoder of the text message in progress
        self.text = False
        self.connect_sent = False
        self.close_code: Optional[int] = None  # set once the app is to be told websocket.disconnect
        self.close_reason = ""
        self.task: Any = None
        self.denial: Optional[RequestCycle] = None
        self.ping_handle: Any = None
        self.ping_payload: Optional[bytes] = None
        self.pong_handle: Any = None
        self.close_handle: Any = None
        self.start_time = time.perf_counter()
        self.accepted_at = 0.0
        self.log_scope: Any = None
        self.app_closed = False
        self.reading_held = False  # reading paused by this object (pre-accept, or queue full)
        self.plain = False  # open with no extension: the fast paths apply (fastpath.py)
        self.partial: Optional[list[Any]] = None  # the pieces of an incomplete fast-path frame
        self.partial_size = 0  # their bytes
        self.partial_need = 0  # the whole frame's

    # -- start -----------------------------------------------------------------------------
    def start(self, data: bytes) -> None:
        proto = self.proto
        state = self.state
        try:
            self.scope = self.build_scope()
        except ValueError:
            self.reject(400, "Bad Request: invalid request target")
            return
        if proto.read_paused:  # held for a pipelined turn: the accept resumes it
            self.reading_held = True
        if data:
            self.data_received(data)
        if state.limit_concurrency is not None and state.active_requests >= state.limit_concurrency:
            self.reject(503, "Service Unavailable: the server is at its concurrency limit", RETRY_AFTER)
            return
        self.task = state.begin_request(self.run_asgi())
        proto.idle_since = self.loop.time()

    def build_scope(self) -> dict[str, Any]:
        proto = self.proto
        state = self.state
        head = self.head
        path, raw_path, query = split_target(state, head.target)
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.5"},
            "http_version": "1.1",
            "scheme": "wss" if proto.scheme == "https" else "ws",
            "server": proto.server,
            "client": proto.client,
            "root_path": state.root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": head.headers,
            "subprotocols": self.handshake.subprotocols,
            "state": state.lifespan_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        if proto.tls is not None:
            scope["extensions"]["tls"] = dict(proto.tls)
        if proto.proxy is not None and head.forwarded:
            proto.proxy.apply(scope)
            # Proxies say http/https for the connection they received; a WebSocket scope has
            # ws/wss (an "https" scheme here breaks apps building URLs from it: uvicorn#1935).
            if scope["scheme"] == "https":
                scope["scheme"] = "wss"
            elif scope["scheme"] == "http":
                scope["scheme"] = "ws"
        self.log_scope = dict(scope, method="GET")
        return scope

    def reject(self, status: int, message: str, extra: bytes = b"") -> None:
        """Answer the handshake with an error response and close (before accept only)."""
        self.phase = CLOSED
        proto = self.proto
        if not proto.closed:
            proto.transport.write(error_response(status, message, proto.state.default_headers, extra))
            proto.close()
        self.log_access(status, [])

    # -- the app ---------------------------------------------------------------------------
    async def run_asgi(self) -> None:
        try:
            result = await self.state.app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.app_failed(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if result is not None:
                logger.error("ASGI callable returned a value instead of None: %r", result)
            denial = self.denial
            if denial is not None:
                if denial.response_state() != 2:
                    logger.error("ASGI callable returned without completing the denial response.")
                    if denial.head_pending:
                        denial.fail_response()
                    else:
                        denial.finish(False)
            elif self.phase == CONNECTING:
                if self.close_code is not None:
                    logger.debug("Client went away before the WebSocket was accepted.")
                else:
                    logger.error("ASGI callable returned without accepting or closing the WebSocket.")
                self.reject(500, "Internal Server Error")
            elif self.phase == ACCEPTED and not self.app_closed:
                self.send_close(1000, "")
        finally:
            self.state.end_request(self.task)

    def app_failed(self, exc: BaseException) -> None:
        cancelled = isinstance(exc, asyncio.CancelledError)
        if self.denial is not None:
            self.denial.app_failed(exc)
            return
        if not cancelled:
            if isinstance(exc, ClientDisconnected) or (self.close_code is not None and isinstance(exc, OSError)):
                logger.debug("WebSocket client disconnected: %r", exc)
            else:
                logger.error("Exception in ASGI application", exc_info=exc)
        if self.phase == CONNECTING:
            self.reject(500, "Internal Server Error")
        elif self.phase == ACCEPTED and not self.app_closed:
            self.send_close(1001 if cancelled else 1011, "")

    async def receive(self) -> dict[str, Any]:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            messages = self.messages
            if messages:
                message = messages.popleft()
                if self.reading_held and self.phase == ACCEPTED and len(messages) <= self.settings.max_queue // 2:
                    self.release_reading()
                return message
            if self.close_code is not None:
                return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)

    async def send(self, message: Any) -> None:
        mtype = message["type"]
        if mtype == "websocket.send":
            conn = self.conn
            # conn._state: what websockets' state property returns (the library reads it too);
            # a property call per message otherwise.
            if self.phase != ACCEPTED or self.app_closed or conn is None or conn._state is not OPEN:
                if self.phase == CONNECTING:
                    raise RuntimeError("Unexpected ASGI message 'websocket.send' before 'websocket.accept'")
                raise ClientDisconnected("WebSocket is closed")
            text = message.get("text")
            if text is not None and message.get("bytes") is not None:
                raise RuntimeError("websocket.send needs exactly one of 'text' and 'bytes'")
            if text is not None:
                if not isinstance(text, str):
                    raise TypeError(f"websocket.send 'text' must be str, got {type(text).__name__}")
                data = text.encode("utf-8")
                opcode = 1
            else:
                data = message.get("bytes")
                if data is None:
                    raise RuntimeError("websocket.send needs 'text' or 'bytes'")
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(f"websocket.send 'bytes' must be bytes, got {type(data).__name__}")
                opcode = 2
            proto = self.proto
            if self.plain:  # no extension: the header is all there is to build
                if proto.closed:
                    raise ClientDisconnected("WebSocket is closed")
                size = len(data)
                if size < 126:
                    proto.transport.write(bytes((0x80 | opcode, size)) + data)
                elif size < BIG_WRITE:
                    proto.transport.write(frame_header(opcode, size) + data)
                else:
                    proto.transport.writelines((frame_header(opcode, size), data))
            else:
                if opcode == 1:
                    conn.send_text(data)
                else:
                    conn.send_binary(data)
                self.flush()
            if proto.write_paused:
                await proto.drain()
            return
        if mtype == "websocket.accept":
            if self.phase != CONNECTING or self.denial is not None:
                raise self._unexpected(mtype)
            self.accept(message)
            return
        if mtype == "websocket.close":
            if self.phase == CONNECTING and self.denial is None:
                self.app_closed = True
                self.reject(403, "Forbidden")
                return
            if self.phase != ACCEPTED or self.app_closed or self.close_code is not None:
                raise ClientDisconnected("WebSocket is closed")
            code = message.get("code")
            reason = message.get("reason") or ""
            self.app_closed = True
            self.send_close(1000 if code is None else code, reason)
            return
        if mtype == "websocket.http.response.start" or mtype == "websocket.http.response.body":
            if self.phase != CONNECTING:
                raise self._unexpected(mtype)
            if self.proto.closed:
                raise ClientDisconnected("client disconnected")
            if self.denial is None:
                if mtype != "websocket.http.response.start":
                    raise self._unexpected(mtype)
                self.denial = cycle = RequestCycle(self.proto, self.head)
                cycle.scope = self.log_scope
                cycle.start_time = self.start_time
                cycle.keep_alive = False  # the client asked for another protocol: end here
            await self.denial.send(dict(message, type=mtype[10:]))  # "http.response.*"
            if self.denial.response_state() == 2:
                self.phase = CLOSED
            return
        raise self._unexpected(mtype)

    def _unexpected(self, mtype: str) -> RuntimeError:
        phase = ("before the accept", "after the accept", "after the close")[self.phase]
        return RuntimeError(f"Unexpected ASGI message {mtype!r} {phase} of a WebSocket")

    # -- accept ------------------------------------------------------------------------------
    def accept(self, message: Any) -> None:
        proto = self.proto
        if proto.closed or self.close_code is not None:
            raise ClientDisconnected("client disconnected before the WebSocket was accepted")
        settings = self.settings
        extensions_value, extensions = negotiate(self.handshake.extensions, settings.extension_factories)
        response, extra = accept_response(
            self.handshake, proto.state.default_headers, extensions_value, message.get("subprotocol"),
            message.get("headers"),
        )
        conn = FrameProtocol(state=OPEN, max_size=settings.max_size, logger=_quiet)
        conn.extensions = extensions
        self.conn = conn
        self.plain = not extensions
        self.phase = ACCEPTED
        self.accepted_at = time.perf_counter()
        proto.transport.write(response)
        self.log_access(101, extra)
        if settings.ping_interval:
            self.ping_handle = self.loop.call_later(settings.ping_interval, self.ping)
        if self.state.shutting_down:
            self.going_away()
            return
        self.release_reading()
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.data_received(data)

    # -- input ---------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:  # before the accept: kept for later, bounded
            self.pending += data
            if len(self.pending) > PENDING_LIMIT:
                self.hold_reading()
            return
        partial = self.partial
        if partial is not None:  # the rest of a frame split_messages took (fastpath.py)
            self.partial = None
            if conn._state is OPEN:
                size = self.partial_size + len(data)
                need = self.partial_need
                if size < need:
                    partial.append(data)
                    self.partial = partial
                    self.partial_size = size
                    return
                cut = len(data) - (size - need)
                partial.append(memoryview(data)[:cut] if cut < len(data) else data)
                messages, _, _ = split_messages(b"".join(partial), self.settings.max_size)
                if not self.deliver_split(conn, messages):
                    return
                if cut == len(data):
                    return
                data = data[cut:]
            else:  # the library has to see it: what it would have buffered goes first
                partial.append(data)
                data = b"".join(partial)
        if self.plain and conn._state is OPEN and self.decoder is None and not self.fragments \
                and conn.current_size is None and not conn.reader.buffer:
            size = len(data)
            if 5 < size < 132 and data[1] == size + 0x7A and (data[0] == 0x82 or data[0] == 0x81):
                # The read is one small final masked frame (a 7-bit length of size - 6): the usual
                # read of a round-trip-bound client. split_messages' checks, without its loop.
                max_size = self.settings.max_size
                if max_size is None or size - 6 <= max_size:
                    self.deliver_split(conn, ((data[0] == 0x81, apply_mask(data[6:], data[2:6])),))
                    return
            messages, used, need = split_messages(data, self.settings.max_size)
            if messages and not self.deliver_split(conn, messages):
                return
            if need:  # a frame the fast path takes, its payload incomplete: kept here until whole
                self.partial = [data[used:] if used else data]
                self.partial_size = len(data) - used
                self.partial_need = need
                return
            if used == len(data):
                return
            if used:
                data = data[used:]
        conn.receive_data(data)
        events = conn.events_received()
        if events:
            self.handle_frames(events)
        if conn.parser_exc is not None and self.close_code is None:
            self.protocol_failed(conn)
        self.flush()

    def deliver_split(self, conn: "FrameProtocol", messages: "Sequence[tuple[bool, bytes]]") -> bool:
        """Deliver split_messages' messages; False when a text one was invalid UTF-8 (failed 1007).

        ``deliver`` inlined: this runs once per read on the common path."""
        queue = self.messages
        max_queue = self.settings.max_queue
        message: dict[str, Any]
        for is_text, payload in messages:
            if is_text:
                try:
                    message = {"type": "websocket.receive", "text": payload.decode("utf-8")}
                except UnicodeDecodeError as exc:
                    self.fail(conn, 1007, f"invalid UTF-8 at position {exc.start}")
                    self.flush()
                    return False
            else:
                message = {"type": "websocket.receive", "bytes": payload}
            if self.close_code is not None:
                continue  # as deliver: the app was told the connection is over
            queue.append(message)
            if len(queue) >= max_queue:
                self.hold_reading()
        if self.waiters:
            self.wake()
        return True

    def eof_received(self) -> bool:
        conn = self.conn
        if conn is None:
            self.disconnect(1006, "")
            return False
        if self.partial is not None:  # the library judges the unfinished frame, as if it had it
            data, self.partial = b"".join(self.partial), None
            conn.receive_data(data)
        conn.receive_eof()
        if self.close_code is None:
            self.disconnect(1006, "")
        self.flush()
        return False

    def connection_lost(self) -> None:
        self.cancel_timers()
        if self.close_code is None:
            self.disconnect(1006, "")
        if self.phase == ACCEPTED:
            self.phase = CLOSED
            if access_logger.isEnabledFor(logging.DEBUG):
                client = self.log_scope["client"]  # as the access line has it (proxy headers applied)
                access_logger.debug(
                    '%s - "WebSocket %s" closed %d %.3fs', "%s:%d" % tuple(client) if client else "unix",
                    self.log_scope["path"],
                    self.close_code, time.perf_counter() - self.accepted_at,
                )

    def handle_frames(self, frames: list[Any]) -> None:
        for frame in frames:  # only Frames once the connection is open
            opcode = frame.opcode
            if opcode is TEXT or opcode is BINARY:
                self.text = opcode is TEXT
                if self.text:
                    self.decoder = _utf8()
                    if not self.add_text(frame):
                        return
                elif frame.fin:
                    self.deliver({"type": "websocket.receive", "bytes": bytes(frame.data)})
                else:
                    self.fragments = [bytes(frame.data)]
            elif opcode is CONT:
                if self.text:
                    if not self.add_text(frame):
                        return
                else:
                    self.fragments.append(bytes(frame.data))
                    if frame.fin:
                        data = b"".join(self.fragments)
                        self.fragments = []
                        self.deliver({"type": "websocket.receive", "bytes": data})
            elif opcode is PONG:
                if self.ping_payload is not None and frame.data == self.ping_payload:
                    self.pong_received()
            elif opcode is CLOSE:
                conn = self.conn
                assert conn is not None
                close = conn.close_rcvd
                if close is not None:
                    self.disconnect(int(close.code), close.reason)
                else:
                    self.disconnect(1005, "")
            # PING: the library queued the pong already.

    def add_text(self, frame: Frame) -> bool:
        """Decode a text fragment as it arrives: invalid UTF-8 fails at once (1007)."""
        try:
            text = self.decoder.decode(frame.data, frame.fin)
        except UnicodeDecodeError as exc:
            conn = self.conn
            assert conn is not None
            self.fragments = []
            self.fail(conn, 1007, f"invalid UTF-8 at position {exc.start}")
            return False
        if frame.fin:
            if self.fragments:
                self.fragments.append(text)
                text = "".join(self.fragments)
                self.fragments = []
            self.decoder = None
            self.deliver({"type": "websocket.receive", "text": text})
        elif text:
            self.fragments.append(text)
        return True

    def deliver(self, message: dict[str, Any]) -> None:
        if self.close_code is not None:
            return  # the app was told the connection is over (it closed it): drop, don't queue
        self.messages.append(message)
        if len(self.messages) >= self.settings.max_queue:
            self.hold_reading()
        self.wake()

    def protocol_failed(self, conn: ServerProtocol) -> None:
        """The library failed the connection (1002, 1007, 1009, ...) and queued its close frame."""
        close = conn.close_sent
        code = int(close.code) if close is not None else 1006
        logger.info("WebSocket closed for a client error (%d): %s", code, conn.parser_exc)
        self.disconnect(code, close.reason if close is not None else "")

    def fail(self, conn: ServerProtocol, code: int, reason: str) -> None:
        logger.info("WebSocket closed for a client error (%d): %s", code, reason)
        conn.fail(code, reason)
        self.disconnect(code, reason)

    # -- output --------------------------------------------------------------------------------
    def flush(self) -> None:
        conn = self.conn
        if conn is None:
            return
        writes = conn.data_to_send()
        if not writes:
            return
        proto = self.proto
        eof = False
        if writes[-1] == b"":  # SEND_EOF: the close handshake is over, or the connection failed
            writes.pop()
            eof = True
        if writes and not proto.closed:
            proto.transport.write(writes[0] if len(writes) == 1 else b"".join(writes))
        if eof:
            self.cancel_timers()
            proto.close()  # lingering: the client reads our close frame, no reset
            self.state.waiting_changed()  # a shutdown may be waiting for this close handshake

    def send_close(self, code: int, reason: str) -> None:
        conn = self.conn
        if conn is None or conn.state is not OPEN:
            return
        try:
            conn.send_close(code, reason)
        except Exception as exc:  # websockets' ProtocolError: a code an endpoint may not send
            raise RuntimeError(f"Invalid websocket.close: {exc}") from None
        self.flush()
        if self.close_code is None:
            # The app or the server closed: the app is done with it either way (ASGI 2.5).
            self.close_code, self.close_reason = code, reason
            self.wake()
        self.close_handle = self.loop.call_later(CLOSE_TIMEOUT, self.close_timed_out)

    def close_timed_out(self) -> None:
        self.close_handle = None
        self.proto.close()

    def going_away(self) -> None:
        """Server shutdown: close 1012 (service restart), and tell the app now."""
        if self.phase == ACCEPTED:
            self.send_close(1012, "")
            self.disconnect(1012, "")

    def disconnect(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.wake()

    def wake(self) -> None:
        waiters = self.waiters
        if waiters:
            self.waiters = []  # each receive() that was waiting looks at the queue again
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- keepalive -------------------------------------------------------------------------------
    def ping(self) -> None:
        self.ping_handle = None
        conn = self.conn
        if conn is None or conn.state is not OPEN or self.proto.closed:
            return
        payload = os.urandom(4)
        conn.send_ping(payload)
        self.flush()
        timeout = self.settings.ping_timeout
        if timeout:
            self.ping_payload = payload
            self.pong_handle = self.loop.call_later(timeout, self.pong_missed)
        else:
            self.ping_handle = self.loop.call_later(self.settings.ping_interval, self.ping)

    def pong_received(self) -> None:
        self.ping_payload = None
        if self.pong_handle is not None:
            self.pong_handle.cancel()
            self.pong_handle = None
        if self.ping_handle is None and self.settings.ping_interval:
            self.ping_handle = self.loop.call_later(self.settings.ping_interval, self.ping)

    def pong_missed(self) -> None:
        self.pong_handle = None
        conn = self.conn
        if conn is not None and conn.state is OPEN:
            self.fail(conn, 1011, "keepalive ping timeout")
            self.flush()

    def cancel_timers(self) -> None:
        for handle in (self.ping_handle, self.pong_handle, self.close_handle):
            if handle is not None:
                handle.cancel()
        self.ping_handle = self.pong_handle = self.close_handle = None

    # -- flow control ----------------------------------------------------------------------------
    def hold_reading(self) -> None:
        if not self.reading_held:
            self.reading_held = True
            self.proto.pause_reading()

    def release_reading(self) -> None:
        if self.reading_held:
            self.reading_held = False
            self.proto.resume_reading()

    # -- logging -------------------------------------------------------------------------------
    def log_access(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        state = self.state
        if state.access_log_enabled and self.log_scope is not None:
            state.access_logger.log(self.log_scope, status, headers, 0, time.perf_counter() - self.start_time)


class FrameProtocol(ServerProtocol):
    """websockets' protocol, except that a close frame between the fragments of a message is a
    normal close (RFC 6455 5.4 allows control frames there; Autobahn 7.1.5): the library fails
    it with 1002. The unfinished message is dropped either way."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is CLOSE:
            self.current_size = None
        super().recv_frame(frame)


class _QuietLogger:
    """websockets logs each connection's open/close at INFO: the access log covers that."""

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    info = warning = debug

    def error(self, *args: Any, **kwargs: Any) -> None:
        logger.error(*args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.ERROR


_quiet: Any = _QuietLogger()
