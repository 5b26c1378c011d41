"""h2's connection state machine, with some of its rulings changed to what RFC 9113 asks of a server.

- A HEADERS frame opening a stream beyond our SETTINGS_MAX_CONCURRENT_STREAMS is a *stream* error
  (RFC 9113 5.1.2: PROTOCOL_ERROR or REFUSED_STREAM). h2 raises TooManyStreamsError, a connection
  error, which would end every other stream of the connection with a GOAWAY. Here the stream is
  created as usual (its header block is decoded, so the HPACK state stays in step with the
  client's) and reset at once with REFUSED_STREAM, which tells the client the request was not
  processed and may be retried. The app never sees it.
- A malformed request (RFC 9113 8.1.1: fields 8.2, pseudo-header fields 8.3, a second HEADERS frame
  without END_STREAM, a content-length that the DATA frames do not add up to) and a stream that
  depends on itself (RFC 7540 5.3.1) are *stream* errors of type PROTOCOL_ERROR. h2 raises a
  ProtocolError for each, a connection error. Here h2's inbound header validation is off
  (``validate_inbound_headers=False``) and ``request_problem``/``trailers_problem`` make every
  check it made (and a few it does not) on the decoded block, before h2's stream sees it: the
  block is decoded in full first, so HPACK stays in step; the stream is then opened and reset
  with PROTOCOL_ERROR (``StreamMalformed``), and the connection and its other streams go on.
  HPACK errors and oversized blocks (bombs) stay connection errors, as do frames h2 rejects for
  the connection's sake.
- A client's GOAWAY only says which of *our* streams (server push: none) it will still process
  and that it opens no more (RFC 9113 6.8); the streams it opened itself go on. h2 moves the
  connection to CLOSED and clears its output instead, after which every HEADERS or DATA for those
  streams raises. Here the event is reported and the connection stays usable, so the responses in
  flight are completed.

These override private h2 methods (4.x: ``_receive_headers_frame``, ``_receive_data_frame``,
``_receive_priority_frame``, ``_receive_goaway_frame``, and ``_receive_frame`` only to drop a
costly trace line) and use its stream state machine and content-length bookkeeping; the HTTP/2
tests exercise each, so a change in h2 shows up there.
"""
from __future__ import annotations

from typing import Any, Optional

import h2.connection
import h2.events
import h2.exceptions
from h2.connection import AllowedStreamIDs, ConnectionInputs
from h2.errors import ErrorCodes, _error_code_from_int
from h2.stream import StreamInputs, StreamState
from hyperframe.frame import PriorityFrame, RstStreamFrame


class StreamRefused(h2.events.Event):
    """A stream beyond the concurrency limit was reset with REFUSED_STREAM (not an h2 event)."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamMalformed(h2.events.Event):
    """A stream was reset with PROTOCOL_ERROR: a malformed request, or it depends on itself
    (not an h2 event). ``reason`` says which rule it broke."""

    def __init__(self, stream_id: int, reason: str) -> None:
        self.stream_id = stream_id
        self.reason = reason


# RFC 9113 8.2.2: connection-specific fields make a message malformed (TE: only "trailers").
CONNECTION_SPECIFIC = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding",
                                 b"upgrade"))
REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# RFC 9113 8.2.1: a field name is lower-case visible ASCII without a colon (pseudo-header fields
# start with one). Names and methods are checked by deleting the allowed bytes: anything left is wrong.
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A and c != 0x3A)
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # RFC 9110 5.6.2
_SCHEME = b"+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # RFC 3986 3.1
_SPACE = (0x20, 0x09)
_LIVE = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE, StreamState.HALF_CLOSED_LOCAL)


def field_problem(name: bytes, value: bytes) -> Optional[str]:
    """What makes one regular field malformed (RFC 9113 8.2.1, 8.2.2), or None."""
    if not name or name.translate(None, _NAME_BYTES):
        return f"invalid field name {name[:40]!r}"
    if value:
        if b"\r" in value or b"\n" in value or b"\0" in value:
            return f"CR, LF or NUL in the value of {name[:40]!r}"
        if value[0] in _SPACE or value[-1] in _SPACE:
            return f"whitespace around the value of {name[:40]!r}"
    if name in CONNECTION_SPECIFIC:
        return f"connection-specific field {name!r}"
    if name == b"te" and value.lower() != b"trailers":
        return "TE other than trailers"
    return None


def request_problem(headers: Any, end_stream: bool) -> Optional[str]:
    """Why a request's decoded header list is malformed (RFC 9113 8.2, 8.3; every check h2's
    inbound validation makes, and a token :method, a valid :scheme and content-length on a
    request without content), or None."""
    pseudo: dict[bytes, bytes] = {}
    regular = False
    host: Optional[bytes] = None
    length: Optional[bytes] = None
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return f"pseudo-header field {name[:40]!r} after a regular field"
            if name in pseudo:
                return f"duplicated {name[:40]!r}"
            if name not in REQUEST_PSEUDO:
                return f"pseudo-header field {name[:40]!r} in a request"
            pseudo[name] = value
            continue
        regular = True
        problem = field_problem(name, value)
        if problem is not None:
            return problem
        if name == b"host":
            if host is not None:
                return "more than one host field"
            host = value
        elif name == b"content-length":
            if not value.isdigit():
                return "invalid content-length"
            if length is not None and int(length) != int(value):
                return "conflicting content-length fields"
            length = value
    method = pseudo.get(b":method")
    if method is None:
        return "no :method"
    if not method or method.translate(None, _TCHAR):
        return "invalid :method"
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            return "CONNECT with :scheme or :path"
    else:
        if b":protocol" in pseudo and method != b"CONNECT":
            return ":protocol without CONNECT"
        scheme = pseudo.get(b":scheme")
        if scheme is None:
            return "no :scheme"
        if not scheme[:1].isalpha() or scheme.translate(None, _SCHEME):
            return "invalid :scheme"
        path = pseudo.get(b":path")
        if path is None:
            return "no :path"
        if not path:
            return "empty :path"
    authority = pseudo.get(b":authority")
    if authority is None and host is None:
        return "neither :authority nor host"
    if authority is not None and host is not None and authority != host:
        return ":authority and host differ"
    if end_stream and length is not None and int(length) != 0:
        return "content-length without the content"
    return None


def trailers_problem(headers: Any, end_stream: bool, stream: Any) -> Optional[str]:
    """Why a HEADERS frame after the request's head (trailers) makes it malformed, or None."""
    if not end_stream:
        return "a second HEADERS frame without END_STREAM"
    for name, value in headers:
        if name[:1] == b":":
            return f"pseudo-header field {name[:40]!r} in trailers"
        problem = field_problem(name, value)
        if problem is not None:
            return problem
    # h2 compares the DATA received with content-length only on DATA frames (private fields, 4.x).
    expected = stream._expected_content_length
    if expected is not None and expected != stream._actual_content_length:
        return "content-length differs from the content"
    return None


class ServerConnection(h2.connection.H2Connection):
    def _receive_frame(self, frame: Any) -> Any:
        """h2's (4.x) without its trace line, whose ``repr(frame)`` is built for every frame even
        when nothing logs: a 16 KiB DATA frame's is a copy and a hex dump of it (40 us)."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except h2.exceptions.StreamClosedError as e:
            # Closed by RST_STREAM: a stream error (RST_STREAM back); otherwise a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except h2.exceptions.StreamIDTooLowError as e:
            # A stream closed by RST_STREAM: a stream error; by END_STREAM or implicitly: connection errors.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise h2.exceptions.StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def _receive_headers_frame(self, frame: Any) -> Any:
        """h2's own steps (4.x), with the concurrency limit and malformed requests as stream errors."""
        sid = frame.stream_id
        refuse = False
        if sid not in self.streams:
            limit = self.local_settings.max_concurrent_streams
            # h2's count walks every stream it keeps (and forgets the closed ones): only near the
            # limit, as it keeps at least the open ones. The same ruling; closed streams wait longer.
            refuse = len(self.streams) >= limit and self.open_inbound_streams + 1 > limit
        # Decoded in full before anything else, whatever happens to the stream: HPACK stays in step.
        # HPACK errors and oversized lists raise here: connection errors.
        headers = h2.connection._decode_headers(self.decoder, frame.data)
        events = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        stream = self._get_or_create_stream(sid, AllowedStreamIDs(not self.config.client_side))
        end_stream = "END_STREAM" in frame.flags
        state = stream.state_machine.state
        problem = None
        if "PRIORITY" in frame.flags and frame.depends_on == sid:
            problem = "the stream depends on itself"
        elif state is StreamState.IDLE:
            problem = request_problem(headers, end_stream)
        elif state is StreamState.OPEN or state is StreamState.HALF_CLOSED_LOCAL:
            problem = trailers_problem(headers, end_stream, stream)
        # Half-closed (remote) or closed: h2's stream state machine answers (STREAM_CLOSED), as before.
        if problem is not None and state is not StreamState.HALF_CLOSED_REMOTE and state is not StreamState.CLOSED:
            if state is StreamState.IDLE:
                stream.state_machine.process_input(StreamInputs.RECV_HEADERS)  # opened, so it can be reset
            self.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
            return [], events + [StreamMalformed(sid, problem)]
        frames, stream_events = stream.receive_headers(headers, end_stream, self.config.header_encoding)
        if "PRIORITY" in frame.flags:
            p_frames, p_events = self._receive_priority_frame(frame)
            stream_events[0].priority_updated = p_events[0]  # type: ignore[attr-defined]
            stream_events.extend(p_events)
        if refuse:
            self.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return frames, events + [StreamRefused(sid)]
        return frames, events + stream_events

    def _receive_data_frame(self, frame: Any) -> Any:
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError as exc:
            problem = f"content-length {exc.expected_length}, DATA {exc.actual_length} bytes"
        # h2 counted the frame in both windows and raised before END_STREAM: the stream is still
        # open (or half-closed local). Reset it; give the connection window back (nobody reads it).
        sid = frame.stream_id
        self.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
        if frame.flow_controlled_length:
            self.acknowledge_received_data(frame.flow_controlled_length, sid)
        return [], [StreamMalformed(sid, problem)]

    def _receive_priority_frame(self, frame: Any) -> Any:
        if frame.depends_on != frame.stream_id or not isinstance(frame, PriorityFrame):
            return super()._receive_priority_frame(frame)
        events = self.state_machine.process_input(ConnectionInputs.RECV_PRIORITY)
        stream = self.streams.get(frame.stream_id)
        if stream is not None and stream.state_machine.state in _LIVE:
            self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            return [], events + [StreamMalformed(frame.stream_id, "the stream depends on itself")]
        # Idle or closed: nothing to close in h2's books, but the client is told (RFC 7540 5.3.1).
        rst = RstStreamFrame(frame.stream_id)
        rst.error_code = ErrorCodes.PROTOCOL_ERROR
        return [rst], events + [StreamMalformed(frame.stream_id, "the stream depends on itself")]

    def _receive_goaway_frame(self, frame: Any) -> Any:
        event = h2.events.ConnectionTerminated()
        event.error_code = _error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
