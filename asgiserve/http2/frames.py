"""h2's connection state machine, with two of its rulings changed to what RFC 9113 asks of a server.

- A HEADERS frame opening a stream beyond our SETTINGS_MAX_CONCURRENT_STREAMS is a *stream* error
  (RFC 9113 5.1.2: PROTOCOL_ERROR or REFUSED_STREAM). h2 raises TooManyStreamsError, a connection
  error, which would end every other stream of the connection with a GOAWAY. Here the stream is
  created as usual (its header block is decoded, so the HPACK state stays in step with the
  client's) and reset at once with REFUSED_STREAM, which tells the client the request was not
  processed and may be retried. The app never sees it.
- A client's GOAWAY only says which of *our* streams (server push: none) it will still process
  and that it opens no more (RFC 9113 6.8); the streams it opened itself go on. h2 moves the
  connection to CLOSED and clears its output instead, after which every HEADERS or DATA for those
  streams raises. Here the event is reported and the connection stays usable, so the responses in
  flight are completed.

Both override private h2 methods (4.x: ``_receive_headers_frame``, ``_receive_goaway_frame``);
the HTTP/2 tests exercise each, so a change in h2 shows up there.
"""
from __future__ import annotations

from typing import Any

import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes, _error_code_from_int


class StreamRefused(h2.events.Event):
    """A stream beyond the concurrency limit was reset with REFUSED_STREAM (not an h2 event)."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class ServerConnection(h2.connection.H2Connection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admitting = False

    @property
    def open_inbound_streams(self) -> int:
        count: int = h2.connection.H2Connection.open_inbound_streams.fget(self)  # type: ignore[attr-defined]
        return 0 if self._admitting else count

    def _receive_headers_frame(self, frame: Any) -> Any:
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.TooManyStreamsError:
            pass  # raised before anything was decoded or created: process it as a stream we refuse
        sid = frame.stream_id
        self._admitting = True
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            self._admitting = False
        self.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        events = [e for e in events if getattr(e, "stream_id", None) != sid]
        events.append(StreamRefused(sid))
        return frames, events

    def _receive_goaway_frame(self, frame: Any) -> Any:
        event = h2.events.ConnectionTerminated()
        event.error_code = _error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
