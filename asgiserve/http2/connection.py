"""One HTTP/2 connection over h2's sans-I/O state machine: frames <-> streams <-> request cycles.

The HTTP/1.1 protocol object (http/protocol.py) keeps the transport, the connection
bookkeeping the server's sweep and shutdown use, and the lingering close; it routes input,
EOF, loss and write-resume here once the connection speaks HTTP/2 (``proto.h2``).

Invariants and defences:
- Each stream runs an ``asgi.http.RequestCycle`` whose channel is an ``H2Stream``.
- App tasks per connection never exceed --http2-max-concurrent-streams: a stream whose
  request arrives while that many tasks still run (reset streams included: rapid reset,
  CVE-2023-44487) waits, unstarted, in ``waiting``, and a stream reset while waiting never
  starts. A stream opened beyond that limit is reset with REFUSED_STREAM (frames.py); the
  connection and its other streams go on.
- Header blocks are bounded by h2 (64 CONTINUATION frames of at most --http2-max-frame-size,
  then PROTOCOL_ERROR) and by the decoded size (--http2-max-header-list-size).
- A decoded header list over --http2-max-header-list-size gets 431 on its stream (up to
  HEADER_LIST_CAP times it; beyond, h2's GOAWAY: an HPACK bomb).
- A connection that opens no stream within --timeout-request-header of the accept is closed.
- A request body that sends nothing for --timeout-request-body gets 408 on its stream.
- Frames that cost us work but carry no request (PING, SETTINGS, PRIORITY, empty DATA,
  RST_STREAM, unknown types) are counted; more than FLOOD_LIMIT within a second ends the
  connection with GOAWAY(ENHANCE_YOUR_CALM).
- A response waiting for the peer's window (or for the transport to drain) with no progress
  for --http2-stall-timeout ends the connection.
- Shutdown (and idle close): GOAWAY(NO_ERROR) with the last stream id accepted; later streams
  are refused (REFUSED_STREAM, safe for the client to retry) and the connection closes once the
  accepted ones are answered. The GOAWAY is written as a raw frame, not through h2, because h2
  treats a connection that sent GOAWAY as closed and would stop the in-flight streams.
- A malformed request (RFC 9113 8.1.1) or a stream depending on itself: RST_STREAM(PROTOCOL_ERROR)
  on that stream (frames.py), one info line per connection; its app never starts, or gets
  http.disconnect when the body gave it away (content-length); the connection goes on. Counted
  like a reset (FLOOD_LIMIT).
- A protocol error from the peer: h2's GOAWAY with its error code, one log line, close.
- The client's GOAWAY(NO_ERROR): its open streams are still answered (frames.py keeps h2 from
  closing the connection on it), then the connection closes; with an error code they end now.
- Request trailers (a HEADERS frame ending the request) are dropped: ASGI has no message for
  them; the body before them is delivered and the request completes.
"""
from __future__ import annotations

import logging
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from ..asgi.http import RequestCycle
from ..http.events import RequestHead
from .hpack_cache import CachingDecoder, CachingEncoder
from .frames import ServerConnection, StreamMalformed, StreamRefused
from .stream import H2Stream

if TYPE_CHECKING:
    from ..http.protocol import HttpProtocol
    from . import H2Settings

logger = logging.getLogger("asgiserve.error")

HEADER_LIST_CAP = 4  # decoded header lists up to 4x --http2-max-header-list-size get a 431, larger a GOAWAY
# Response bytes framed before they are written out within one pump: h2's buffer stays below
# malloc's mmap threshold (128 KiB), so it is reused rather than mapped afresh.
FLUSH_AT = 64 * 1024
FLOOD_LIMIT = 1000  # control frames (and empty ones) per second before GOAWAY(ENHANCE_YOUR_CALM)
_FORWARDED = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"))
S = h2.settings.SettingCodes


class _QuietLog:
    """h2's logger interface (debug, trace) doing nothing. ``"".format`` takes any arguments and
    is a C call: h2's own DummyLogger costs a Python call per message, ~10 per stream."""

    debug = trace = "".format


class _QuietDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """hpack's module logger without its debug lines (~28 calls per stream through the logging
    module, about 5% of a stream's cost); other levels still go to the real logger."""

    debug = "".format  # type: ignore[assignment]


def _quiet_hpack() -> None:
    """Only where hpack has the module logger we know of and debug is off: an hpack that logs
    differently is left alone."""
    for name in ("hpack.hpack", "hpack.table"):
        module = sys.modules.get(name)
        log = getattr(module, "log", None)
        if isinstance(log, logging.Logger) and not log.isEnabledFor(logging.DEBUG):
            module.log = _QuietDebug(log, {})  # type: ignore[union-attr]


_quiet_hpack()


class H2Connection:
    __slots__ = (
        "proto", "state", "loop", "settings", "h2", "streams", "waiting", "running", "sending",
        "goaway_sent", "last_stream_id", "flood_count", "flood_start", "blocked_since", "peer_goaway",
        "max_tasks", "opened_at", "flush_pending", "malformed",
    )

    def __init__(self, proto: "HttpProtocol", settings: "H2Settings") -> None:
        self.proto = proto
        self.state = proto.state
        self.loop = proto.loop
        self.settings = settings
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None,
            # Outbound headers were validated by prepare_head (and lower-cased by the stream).
            validate_outbound_headers=False, normalize_outbound_headers=False,
            # Inbound ones are validated by frames.py, which makes a malformed request a stream
            # error (RST_STREAM PROTOCOL_ERROR) where h2 would end the connection.
            validate_inbound_headers=False,
            # Split cookie fields are joined in on_request, in the loop that reads every field anyway.
            normalize_inbound_headers=False,
            logger=_QuietLog(),  # type: ignore[arg-type]
        )
        conn = ServerConnection(config=config)
        # Repeated response heads and request blocks: a dict lookup instead of hpack's work (hpack_cache.py).
        conn.encoder = CachingEncoder()
        conn.decoder = CachingDecoder()
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            S.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            S.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
            S.HEADER_TABLE_SIZE: settings.header_table_size,
            S.MAX_FRAME_SIZE: settings.max_frame_size,
            S.INITIAL_WINDOW_SIZE: settings.initial_window_size,
            S.ENABLE_PUSH: 0,
        })
        # h2 applies these when the client acknowledges our SETTINGS; enforce them from the start.
        conn.max_inbound_frame_size = settings.max_frame_size
        # A header list over the advertised size gets 431 on its stream (on_request), which needs
        # the whole block decoded (an interrupted decode leaves HPACK out of step for good). The
        # decoder's own cap, HEADER_LIST_CAP times the limit, still stops HPACK bombs: beyond it,
        # h2's connection error (GOAWAY ENHANCE_YOUR_CALM).
        conn.decoder.max_header_list_size = settings.max_header_list_size * HEADER_LIST_CAP
        conn.decoder.max_allowed_table_size = settings.header_table_size
        self.h2 = conn
        self.streams: dict[int, H2Stream] = {}  # streams not yet ended or reset on our side
        self.waiting: deque[H2Stream] = deque()  # requests whose app waits for a task slot
        self.running = 0  # app tasks of this connection still running
        self.max_tasks = settings.max_concurrent_streams
        self.sending: set[H2Stream] = set()  # streams with bytes waiting for a window
        self.goaway_sent = False
        self.peer_goaway = False
        self.last_stream_id = 0
        self.flood_count = 0
        self.flood_start = 0.0
        self.blocked_since = 0.0  # when a response began waiting on the peer (0: none waits)
        self.opened_at = proto.idle_since  # the accept: the first request is due within --timeout-request-header
        self.flush_pending = False
        self.malformed = 0  # streams reset as malformed (the first is logged at info, the rest at debug)

    def start(self, data: bytes) -> None:
        """Send our SETTINGS (and connection window), then take the client's first bytes."""
        conn = self.h2
        conn.initiate_connection()
        extra = self.settings.connection_window_size - 65535
        if extra > 0:
            conn.increment_flow_control_window(extra)
        self.flush()
        if data:
            self.data_received(data)

    # -- input ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the error code (PROTOCOL_ERROR, FRAME_SIZE_ERROR, ...).
            logger.info("HTTP/2 protocol error from %s: %s", self.proto.client_label(), exc)
            self.fail()
            return
        event: Any
        for event in events:
            cls = type(event)
            if cls is h2.events.DataReceived:
                self.on_data(event)
            elif cls is h2.events.RequestReceived:
                self.on_request(event)
            elif cls is h2.events.StreamEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None and stream.cycle is not None:
                    stream.cycle.end_body()
            elif cls is h2.events.WindowUpdated:
                self.window_opened(event.stream_id)
            elif cls is h2.events.StreamReset:
                self.flood()
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.closed_by_reset()
            elif cls is h2.events.RemoteSettingsChanged:
                self.flood()
                if S.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self.window_opened(0)
            elif cls is h2.events.ConnectionTerminated:
                self.on_goaway(event)
                if self.proto.closed:
                    return
            elif cls is StreamRefused:
                # Opened beyond --http2-max-concurrent-streams: reset (REFUSED_STREAM) by frames.py,
                # never started. Counted like a reset, so a client can't make a loop of it.
                logger.debug("HTTP/2 stream %d from %s refused: over the concurrent stream limit",
                             event.stream_id, self.proto.client_label())
                self.flood()
            elif cls is StreamMalformed:
                self.on_malformed(event)
            elif cls is h2.events.TrailersReceived:
                pass  # request trailers are not passed to ASGI apps (the spec has no message for them)
            elif cls is h2.events.SettingsAcknowledged or cls is h2.events.PingAckReceived:
                pass
            else:  # PingReceived (h2 answers), PriorityUpdated, UnknownFrameReceived, ...
                self.flood()
            if self.proto.closed:
                return
        self.flush()

    def flood(self) -> None:
        now = self.loop.time()
        if now - self.flood_start >= 1.0:
            self.flood_start = now
            self.flood_count = 0
        self.flood_count += 1
        if self.flood_count > FLOOD_LIMIT and not self.proto.closed:
            logger.warning("HTTP/2 flood from %s (more than %d control or empty frames in a second): closing.",
                           self.proto.client_label(), FLOOD_LIMIT)
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.last_stream_id)
            self.fail()

    def on_malformed(self, event: StreamMalformed) -> None:
        """frames.py reset a stream with PROTOCOL_ERROR (a malformed request, RFC 9113 8.1.1): its
        app never starts, or, when the problem came with the body (content-length), it gets
        http.disconnect. The connection goes on; counted like a reset. One info line per
        connection (as an HTTP/1.1 connection gets for its bad request), the rest at debug."""
        self.malformed += 1
        logger.log(logging.INFO if self.malformed == 1 else logging.DEBUG,
                   "Malformed HTTP/2 request from %s (stream %d: %s): stream reset%s", self.proto.client_label(),
                   event.stream_id, event.reason, "" if self.malformed == 1 else f" ({self.malformed} so far)")
        self.flood()
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.closed_by_reset()

    def on_request(self, event: Any) -> None:
        sid = event.stream_id
        if self.goaway_sent:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)  # never seen by the app: safe to retry
            return
        self.last_stream_id = sid
        method = path = authority = b""
        headers: list[tuple[bytes, bytes]] = []
        length = 0
        size = 0  # RFC 9113 6.5.2 accounting: name + value + 32 per field
        expect = forwarded = has_host = False
        cookies: Optional[list[bytes]] = None
        for name, value in event.headers:
            size += len(name) + len(value) + 32
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue
            if name == b"cookie":
                if cookies is None:
                    cookies = [value]
                else:
                    cookies.append(value)
                continue
            headers.append((name, value))
            if name == b"content-length":
                length = int(value) if value.isdigit() else 0  # h2 checks it against the DATA received
            elif name == b"host":
                has_host = True
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
            elif name in _FORWARDED:
                forwarded = True
        if cookies is not None:
            # RFC 9113 8.2.3: split cookie fields are one field again for the app (last, as h2 put it)
            headers.append((b"cookie", cookies[0] if len(cookies) == 1 else b"; ".join(cookies)))
        if authority and not has_host:
            headers.insert(0, (b"host", authority))  # what apps written for HTTP/1.1 look for
        stream = H2Stream(self, sid)
        self.streams[sid] = stream
        if size > self.settings.max_header_list_size:
            logger.info("Request header fields too large from %s (HTTP/2 stream %d: %d bytes)",
                        self.proto.client_label(), sid, size)
            stream.write_error(431, "Request Header Fields Too Large")
            stream.finished = True
            if self.state.metrics is not None:
                self.state.metrics.rejected(431)
            return
        if method == b"CONNECT":
            # No tunnels and no RFC 8441 extended CONNECT: not a request an http scope can carry.
            stream.write_error(501, "Not Implemented: CONNECT")
            stream.finished = True
            return
        head = RequestHead(method, path or b"/", "2", headers, length, None, expect, forwarded)
        cycle = stream.cycle = RequestCycle(stream, head)
        if length > self.state.body_limit:
            self.refuse_body(stream, cycle, 413, "Request body too large")
            return
        if self.proto.fresh or self.state.shutting_down:
            self.proto.fresh = False
            self.state.waiting_changed()
        if self.running >= self.max_tasks:
            self.waiting.append(stream)
        else:
            self.run(stream)

    def run(self, stream: H2Stream) -> None:
        cycle = stream.cycle
        assert cycle is not None
        stream.started = True
        cycle.start()
        task = cycle.task
        if task is not None:
            self.running += 1
            task.add_done_callback(self.task_done)

    def task_done(self, task: Any) -> None:
        self.running -= 1
        while self.waiting and self.running < self.max_tasks and not self.proto.closed:
            stream = self.waiting.popleft()
            if not stream.reset:
                self.run(stream)
        self.check_idle()

    def on_data(self, event: Any) -> None:
        sid = event.stream_id
        size = event.flow_controlled_length
        data = event.data
        stream = self.streams.get(sid)
        cycle = stream.cycle if stream is not None else None
        if cycle is None or cycle.discarding or cycle.disconnected or cycle.response == 2:
            if size:
                self.acknowledge(sid, size)  # nobody will read it
            return
        if size != len(data):
            self.acknowledge(sid, size - len(data))  # padding
        if not data:
            if not event.stream_ended:
                self.flood()
            return
        cycle.feed_body(data)
        if cycle.received > self.state.body_limit:
            assert stream is not None
            self.refuse_body(stream, cycle, 413, "Request body too large")

    def refuse_body(self, stream: H2Stream, cycle: RequestCycle, status: int, reason: str) -> None:
        """A body over --limit-request-body (413) or stalled (408): that answer if the response
        has not started, else a reset; the other streams go on."""
        logger.info("%s from %s (HTTP/2 stream %d)", reason, self.proto.client_label(), stream.sid)
        if stream in self.waiting:
            self.waiting.remove(stream)
        started = cycle.response_started()
        cycle.disconnect()
        if cycle.chunks:
            cycle.discard_body()
        if started or stream.ended:
            stream.send_reset(ErrorCodes.CANCEL)
        else:
            stream.write_error(status, reason)
            cycle.answered(status)
            if self.state.metrics is not None:
                self.state.metrics.rejected(status)
        stream.finished = True
        self.stream_finished(stream)

    def acknowledge(self, sid: int, size: int) -> None:
        self.h2.acknowledge_received_data(size, sid)
        self.flush()

    def on_goaway(self, event: Any) -> None:
        """The client is leaving. With NO_ERROR, the streams it opened are still answered (its
        last-stream-id concerns streams we would have opened: none) and the connection closes
        once they are; with an error code it has given up on the connection: they end now."""
        self.peer_goaway = True
        if event.error_code == ErrorCodes.NO_ERROR:
            logger.debug("HTTP/2 client %s sent GOAWAY: closing once its %d open streams are answered",
                         self.proto.client_label(), len(self.streams))
            self.check_idle()
            return
        logger.info("HTTP/2 client %s sent GOAWAY(%s): ending its streams",
                    self.proto.client_label(), getattr(event.error_code, "name", event.error_code))
        for stream in list(self.streams.values()):
            stream.closed_by_reset()
        self.waiting.clear()
        self.proto.close()

    # -- output -----------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.proto.closed:
            self.proto.transport.write(data)

    def flush_soon(self) -> None:
        """Responses written during one loop turn go out in one write: the streams of a
        connection usually run together, and a write per stream was a syscall per response.
        Anything that closes the connection flushes first (send_goaway, fail), so nothing waits
        here past a close."""
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush_deferred)

    def flush_deferred(self) -> None:
        self.flush_pending = False
        self.flush()

    def pump(self, stream: H2Stream) -> None:
        """Send what the peer's windows allow of ``stream``'s pending bytes (then END_STREAM)."""
        conn = self.h2
        sid = stream.sid
        pending = stream.pending
        sent = unflushed = 0
        while pending:
            window = conn.local_flow_control_window(sid)
            if window <= 0:
                break
            chunk = pending[0]
            size = min(len(chunk), window, conn.max_outbound_frame_size)
            if size == len(chunk):
                pending.popleft()
            else:
                # A view: slicing the bytes copied the rest of the body once per frame (1 MiB: 32 MiB).
                if type(chunk) is bytes:
                    chunk = memoryview(chunk)
                pending[0] = chunk[size:]
                chunk = chunk[:size]
            stream.pending_size -= size
            sent += size
            end = stream.end_pending and not pending and stream.trailers is None
            conn.send_data(sid, chunk, end_stream=end)
            if end:
                stream.ended = True
            unflushed += size
            if unflushed >= FLUSH_AT:
                unflushed = 0
                self.flush()
        if not pending and stream.end_pending and not stream.ended:
            if stream.trailers is not None:
                conn.send_headers(sid, stream.trailers, end_stream=True)
            else:
                conn.end_stream(sid)
            stream.ended = True
        if sent and not self.proto.write_paused:
            self.blocked_since = 0.0
        if pending:
            self.sending.add(stream)
            self.waiting_for_peer()
        else:
            self.sending.discard(stream)
        if stream.waiter is not None and not stream.write_paused:
            stream.wake()
        if stream.ended:
            self.stream_done(stream)

    def window_opened(self, sid: int) -> None:
        if sid:
            stream = self.streams.get(sid)
            if stream is not None and stream in self.sending:
                self.pump(stream)
        else:
            for stream in list(self.sending):
                self.pump(stream)
                if self.h2.outbound_flow_control_window <= 0:
                    break

    def resume_writing(self) -> None:
        self.blocked_since = 0.0
        for stream in list(self.streams.values()):
            if stream.waiter is not None and not stream.write_paused:
                stream.wake()

    def waiting_for_peer(self) -> None:
        if not self.blocked_since:
            self.blocked_since = self.loop.time()

    # -- stream bookkeeping --------------------------------------------------------------------
    def stream_done(self, stream: H2Stream) -> None:
        """END_STREAM or RST_STREAM went (or came): the stream needs nothing more from us."""
        if self.streams.pop(stream.sid, None) is None:
            return
        self.sending.discard(stream)
        cycle = stream.cycle
        if stream.ended and not stream.reset and (cycle is None or not cycle.body_done):
            # The response is complete and the request body still arriving: stop it (RFC 9113 8.1).
            try:
                self.h2.reset_stream(stream.sid, ErrorCodes.NO_ERROR)
            except h2.exceptions.StreamClosedError:
                pass
        if not stream.started and stream in self.waiting:
            self.waiting.remove(stream)
        self.check_idle()

    def stream_finished(self, stream: H2Stream) -> None:
        self.check_idle()

    def check_idle(self) -> None:
        if self.streams or self.running or self.waiting or self.proto.closed:
            return
        self.proto.idle_since = self.loop.time()
        self.blocked_since = 0.0
        if self.goaway_sent or self.peer_goaway or self.state.shutting_down:
            self.proto.close()

    def is_idle(self) -> bool:
        return not self.streams and not self.running and not self.waiting

    def check_deadlines(self, now: float) -> None:
        """The server's sweep: a connection that opened no stream within --timeout-request-header
        of the accept is closed (GOAWAY), as an HTTP/1.1 one that sends no head is; a request
        body that stalls gets 408 (--timeout-request-body, per stream); a response that waited
        on the peer too long ends the connection."""
        if not self.last_stream_id and not self.proto.closed:
            timeout = self.state.config.timeout_request_header
            if now - self.opened_at >= timeout:
                logger.info("HTTP/2 client %s opened no stream within %gs: closing.", self.proto.client_label(), timeout)
                self.proto.close()
            return
        body_timeout = self.state.config.timeout_request_body
        if body_timeout:
            for stream in list(self.streams.values()):
                cycle = stream.cycle
                if cycle is None or cycle.body_done or cycle.response == 2 or stream.reset:
                    continue
                if stream.buffered or cycle.received != cycle.seen:
                    cycle.seen, cycle.seen_at = cycle.received, now  # progress, or the app is not reading
                elif now - cycle.seen_at >= body_timeout:
                    self.refuse_body(stream, cycle, 408, "Request body timeout")
        timeout = self.settings.stall_timeout
        if timeout and self.blocked_since and now - self.blocked_since >= timeout and not self.proto.closed:
            if not self.sending and not self.proto.write_paused:
                self.blocked_since = 0.0
                return
            logger.info("HTTP/2 client %s did not take response data for %gs: closing.",
                        self.proto.client_label(), timeout)
            self.send_goaway(ErrorCodes.NO_ERROR)
            self.proto.abort()

    # -- closing ------------------------------------------------------------------------------
    def send_goaway(self, code: int = ErrorCodes.NO_ERROR) -> None:
        if self.goaway_sent or self.proto.closed:
            return
        self.goaway_sent = True
        self.flush()
        frame = GoAwayFrame(0, last_stream_id=self.last_stream_id, error_code=code)
        self.proto.transport.write(frame.serialize())

    def going_away(self) -> None:
        """Shutdown began: no new streams; close once the accepted ones are answered."""
        self.send_goaway()
        self.check_idle()

    def closing(self) -> None:
        """The protocol object closes the connection (idle sweep, shutdown, limits)."""
        if not self.proto.closed:
            self.flush()  # responses still waiting for flush_soon
            self.send_goaway()
        for stream in list(self.streams.values()):
            if stream.cycle is not None:
                stream.cycle.disconnect()

    def fail(self) -> None:
        """After a connection error: what h2 queued (its GOAWAY) goes out, then the connection closes."""
        data = self.h2.data_to_send()
        if data and not self.proto.closed:
            self.proto.transport.write(data)
        self.goaway_sent = True
        for stream in list(self.streams.values()):
            stream.closed_by_reset()
        self.waiting.clear()
        self.proto.close()

    def connection_lost(self) -> None:
        for stream in list(self.streams.values()):
            stream.closed_by_reset()
        self.waiting.clear()
