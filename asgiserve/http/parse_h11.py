"""h11 adapter: bytes in, parser events out, with h11 as the strict request-head reader.

Per message: the adapter finds the end of the head (CRLFCRLF) itself, applies the byte-level
rules llhttp enforces and h11 does not (``framing.check_raw_head``), and hands exactly that
head to a fresh ``h11.Connection(h11.SERVER)``, whose ``Request`` event (or
``RemoteProtocolError`` -> 400) validates the request line and field lines. h11's send side,
keep-alive state and PAUSED never come into play: each Connection sees one head and is dropped.

Bodies are framed here, not by h11: Content-Length bodies are sliced without copying, and
chunked bodies use ``framing``'s chunk grammar, because h11's chunk reader is laxer than
llhttp (any extension bytes, up to 20 hex digits, no overflow check) and the two backends must
agree. Feeding h11 only whole heads also keeps it from copying pipelined data it would only
hand back as ``trailing_data``.

While a head, chunk-size line or trailer line is incomplete, its bytes wait in a bytearray;
errors llhttp would report as soon as it read them are checked incrementally (at doubling
sizes, so slow senders cost linear time), and the head budget bounds memory.
"""
from __future__ import annotations

import re
from typing import Optional

import h11

from .events import MESSAGE_END, BodyChunk, Event, ParseError, RequestHead
from .framing import (
    CHUNKED,
    check_field_prefix,
    check_raw_head,
    check_request_line_prefix,
    check_trailer,
    inspect_head,
    normalize_request_line,
    parse_chunk_size,
    parse_field_line,
)
from .limits import FieldMeter, HeadLimits, Reject

_HEAD, _LENGTH, _SIZE, _DATA, _DATA_END, _TRAILER = range(6)
_NEED = {_HEAD: b"\r\n\r\n", _SIZE: b"\r\n", _DATA_END: b"\r\n", _TRAILER: b"\r\n"}
_EMPTY_LINES = re.compile(rb"[\r\n]*")
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_SERVER = h11.SERVER
_Connection = h11.Connection
_Request = h11.Request
_H11Error = h11.RemoteProtocolError


class H11Parser:
    """``RequestParser`` using h11 for heads and ``framing`` for bodies."""

    __slots__ = (
        "limits", "state", "remaining", "pending", "searched", "scanned", "next_check",
        "trailer_count", "trailer_bytes", "fields", "dead",
    )

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.state = _HEAD
        self.remaining = 0  # body bytes left (_LENGTH) or chunk bytes left (_DATA)
        self.pending: Optional[bytearray] = None  # incomplete head / line, from its first byte
        self.searched = 0  # pending holds no terminator before this offset
        self.scanned = 0  # complete head lines in pending already checked
        self.next_check = 0  # size of the partial line at which to check it again
        self.trailer_count = 0
        self.trailer_bytes = 0
        self.fields = 0  # complete field lines of the incomplete head checked so far
        self.dead = False

    # -- RequestParser ------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        if self.dead or not data:
            return []
        events: list[Event] = []
        try:
            pending = self.pending
            if pending is not None:
                need = _NEED[self.state]
                pending += data
                if pending.find(need, max(0, self.searched - len(need) + 1)) < 0:
                    self.searched = len(pending)
                    self._check_pending(pending)
                    return events
                self.pending = None
                data = bytes(pending)
            self._parse(data, events)
        except Reject as reject:
            self.dead = True
            self.pending = None
            events.append(ParseError(reject.status, reject.reason))
        return events

    def feed_eof(self) -> list[Event]:
        if self.dead or (self.state == _HEAD and self.pending is None):
            return []
        self.dead = True
        return [ParseError(400, "Connection closed in the middle of a request")]

    # -- parsing --------------------------------------------------------------------------
    def _parse(self, data: bytes, events: list[Event]) -> None:
        pos = 0
        end = len(data)
        while pos < end:
            state = self.state
            if state == _HEAD:
                if data[pos] in b"\r\n":  # empty lines before a request line are ignored
                    pos = _EMPTY_LINES.match(data, pos).end()  # type: ignore[union-attr]
                    if pos == end:
                        return
                stop = data.find(b"\r\n\r\n", pos)
                if stop < 0:
                    return self._wait(data, pos)
                stop += 4
                self._head(data[pos:stop], events)
                pos = stop
            elif state == _LENGTH or state == _DATA:
                remaining = self.remaining
                if end - pos < remaining:
                    events.append(BodyChunk(data[pos:] if pos else data))
                    self.remaining = remaining - (end - pos)
                    return
                events.append(BodyChunk(data[pos : pos + remaining]))
                pos += remaining
                if state == _LENGTH:
                    events.append(MESSAGE_END)
                    self.state = _HEAD
                else:
                    self.state = _DATA_END
            elif state == _DATA_END:
                if data[pos : pos + 2] != b"\r\n":
                    if end - pos == 1 and data[pos] == 13:
                        return self._wait(data, pos)
                    raise Reject(400, "Chunk data not followed by CRLF")
                pos += 2
                self.state = _SIZE
            else:  # _SIZE or _TRAILER: one CRLF-terminated line
                stop = data.find(b"\r\n", pos)
                if stop < 0:
                    return self._wait(data, pos)
                line = data[pos:stop]
                pos = stop + 2
                if state == _SIZE:
                    self._size_line(line)
                elif line:
                    self._trailer_line(line)
                else:
                    events.append(MESSAGE_END)
                    self.state = _HEAD

    def _head(self, head: bytes, events: list[Event]) -> None:
        self.scanned = self.next_check = self.fields = 0
        check_raw_head(head)
        eol = head.find(b"\r\n")
        line = head[:eol]
        normal = normalize_request_line(line)
        if normal is not line:
            head = normal + head[eol:]
            eol = len(normal)
        connection = _Connection(_SERVER, max_incomplete_event_size=self.limits.budget)
        connection.receive_data(head)
        try:
            request = connection.next_event()
        except _H11Error:
            raise Reject(400, "Malformed request head") from None
        if type(request) is not _Request:  # pragma: no cover - h11 got a complete head
            raise Reject(400, "Malformed request head")
        raw_version = request.http_version
        version = _VERSIONS.get(raw_version) or raw_version.decode("ascii")
        headers = []
        if len(head) > eol + 4:
            for field in head[eol + 2 : -4].split(b"\r\n"):
                name, _, value = field.partition(b":")
                headers.append((name.lower(), value.strip(b" \t")))
        method = request.method
        target = request.target
        framing = inspect_head(method, target, version, headers, self.limits)
        events.append(RequestHead(method, target, version, headers))
        if framing == 0:
            events.append(MESSAGE_END)
        elif framing == CHUNKED:
            self.state = _SIZE
            self.trailer_count = self.trailer_bytes = 0
        else:
            self.state = _LENGTH
            self.remaining = framing

    def _size_line(self, line: bytes) -> None:
        size = parse_chunk_size(line)
        if size:
            self.state = _DATA
            self.remaining = size
        else:
            self.state = _TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if line[0] in b" \t":
            raise Reject(400, "Obsolete line folding")
        name, value = parse_field_line(line)
        self.trailer_count += 1
        self.limits.check_field(self.trailer_count, name, value)
        check_trailer(name)
        self.trailer_bytes += len(line) + 2
        self.next_check = 0

    # -- incomplete input -----------------------------------------------------------------
    def _wait(self, data: bytes, pos: int) -> None:
        pending = bytearray(data[pos:] if pos else data)
        self.pending = pending
        self.searched = len(pending)
        self._check_pending(pending)

    def _check_pending(self, pending: bytearray) -> None:
        state = self.state
        if state == _HEAD:
            self._check_head(pending)
        elif state == _DATA_END:
            if len(pending) > 1 or pending[0] != 13:
                raise Reject(400, "Chunk data not followed by CRLF")
        else:
            size = len(pending)
            if size >= self.next_check or size > self.limits.budget:
                self.next_check = 2 * size
                if b"\n" in pending:
                    raise Reject(400, "Bare LF in chunked body")
                if state == _TRAILER:
                    partial = bytes(pending)
                    self._check_line(partial[:-1] if partial[-1:] == b"\r" else partial, False, False)
                elif size > self.limits.budget:
                    raise Reject(400, "Chunk-size line too long")
            if state == _TRAILER:
                self.limits.check_pending(self.trailer_bytes + size)

    def _check_head(self, pending: bytearray) -> None:
        """Incrementally check an incomplete head; enforce the head budget."""
        scanned = self.scanned
        eol = pending.find(b"\r\n", scanned)
        while eol >= 0:
            self._check_line(bytes(pending[scanned:eol]), scanned == 0, True)
            scanned = eol + 2
            self.next_check = 0
            eol = pending.find(b"\r\n", scanned)
        self.scanned = scanned
        size = len(pending) - scanned
        over = len(pending) > self.limits.budget
        if size >= self.next_check or over:
            line_limit = self.limits.line
            self.next_check = 2 * size if size > line_limit or scanned else min(2 * size, line_limit + 1)
            partial = bytes(pending[scanned:])
            self._check_line(partial[:-1] if partial[-1:] == b"\r" else partial, scanned == 0, False)
        if over:
            raise Reject(431, "Request header section too large")

    def _check_line(self, line: bytes, first: bool, complete: bool) -> None:
        """Check one line of an incomplete head or trailer section, as llhttp would have."""
        if b"\n" in line:
            raise Reject(400, "Bare LF in request head")
        if first:
            check_request_line_prefix(line, complete, self.limits)
            return
        if line[:1] in (b" ", b"\t"):
            raise Reject(400, "Obsolete line folding")
        if complete:
            name, value = parse_field_line(line)
            self.fields += 1
            self.limits.check_field(self.fields, name, value)
        else:
            check_field_prefix(line)
            FieldMeter().check(self.limits, line)
