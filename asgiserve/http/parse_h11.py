"""h11 adapter: bytes in, parser events out, with h11 as the strict request-head validator.

Per message: the adapter finds the end of the head (CRLFCRLF) itself, applies the byte-level
rules llhttp enforces and h11 does not (``framing.check_raw_head``), splits the request line
and field lines, and has ``h11.Request`` validate them (method and field-name tokens, target
and field-value characters, Host rules; ``LocalProtocolError`` -> 400). That is the same
validation an ``h11.Connection`` applies when it reads a head, minus its connection state
machine, which asgiserve never uses (the core owns keep-alive): building a Connection per
message and calling next_event() cost twice as much per request. h11's send side, keep-alive
state and PAUSED therefore never exist here. A head byte-identical to the connection's
previous one reuses its verdict.

Bodies are framed here, not by h11: Content-Length bodies are sliced without copying, and
chunked bodies use ``framing``'s chunk grammar, because h11's chunk reader is laxer than
llhttp (any extension bytes, up to 20 hex digits, no overflow check) and the two backends must
agree. (An h11.Connection would also copy all pipelined data behind a message into its
buffer, to hand it back as ``trailing_data``.)

While a head, chunk-size line or trailer line is incomplete, its bytes wait in a bytearray;
errors llhttp would report as soon as it read them are checked incrementally (at doubling
sizes, so slow senders cost linear time), and the head budget bounds memory.
"""
from __future__ import annotations

import re
from typing import Optional

import h11

from .events import MESSAGE_END, BodyChunk, Event, ParseError, RequestHead, Upgrade
from .framing import (
    CHUNKED,
    check_field_prefix,
    check_raw_head,
    REQUEST_LINE,
    check_request_line_prefix,
    check_trailer,
    inspect_head,
    parse_chunk_size,
    parse_field_line,
)
from .limits import FieldMeter, HeadLimits, Reject

_HEAD, _LENGTH, _SIZE, _DATA, _DATA_END, _TRAILER = range(6)
_NEED = {_HEAD: b"\r\n\r\n", _SIZE: b"\r\n", _DATA_END: b"\r\n", _TRAILER: b"\r\n"}
_EMPTY_LINES = re.compile(rb"[\r\n]*")
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_Request = h11.Request
_H11Error = h11.LocalProtocolError

# Raw field lines h11 has validated, shared by all connections of the process (Host,
# User-Agent, Accept... repeat across requests even when targets differ). Bounded: short lines
# only, and the table starts over when full.
_VALID_LINES: dict[bytes, tuple[bytes, bytes]] = {}
_MAX_REMEMBERED = 4096
_MAX_LINE = 256


def _remember(fresh: list[tuple[bytes, tuple[bytes, bytes]]]) -> None:
    if len(_VALID_LINES) > _MAX_REMEMBERED:
        _VALID_LINES.clear()
    for line, field in fresh:
        if len(line) <= _MAX_LINE:
            _VALID_LINES[line] = field


class H11Parser:
    """``RequestParser`` using h11 for heads and ``framing`` for bodies."""

    __slots__ = (
        "limits", "state", "remaining", "pending", "searched", "scanned", "next_check",
        "trailer_count", "trailer_bytes", "fields", "last_head", "last", "dead", "upgrades",
    )

    def __init__(self, limits: HeadLimits, upgrades: bool = False) -> None:
        self.limits = limits
        self.upgrades = upgrades
        self.state = _HEAD
        self.remaining = 0  # body bytes left (_LENGTH) or chunk bytes left (_DATA)
        self.pending: Optional[bytearray] = None  # incomplete head / line, from its first byte
        self.searched = 0  # pending holds no terminator before this offset
        self.scanned = 0  # complete head lines in pending already checked
        self.next_check = 0  # size of the partial line at which to check it again
        self.trailer_count = 0
        self.trailer_bytes = 0
        self.fields = 0  # complete field lines of the incomplete head checked so far
        self.last_head = b""  # the previous head and its verdict (see _head)
        self.last: Optional[RequestHead] = None
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
                searched = self.searched
                if pending.find(need, max(0, searched - len(need) + 1)) < 0:
                    self.searched = len(pending)
                    self._check_pending(pending, searched)
                    return events
                self.pending = None
                data = bytes(pending)
            self._parse(data, events)
        except Reject as reject:
            self.dead = True
            self.pending = None
            events.append(ParseError(reject.status, reject.reason))
        return events

    def head_pending(self) -> bool:
        return self.state == _HEAD and self.pending is not None and not self.dead

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
                if self.dead:  # a WebSocket request: what follows is not HTTP
                    events.append(Upgrade(data[stop:]))
                    return
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
        last = self.last
        if head == self.last_head and last is not None:
            # Byte-identical to this connection's previous head (load generators, polling
            # clients): same parse, same verdict. Only the headers list is fresh per request.
            event = last.copy()
        else:
            event = self._read_head(head)
            self.last_head = head
            self.last = event.copy()  # kept apart from the list the app gets
        events.append(event)
        if event.upgrade and self.upgrades:
            self.dead = True
            return
        framing = event.framing
        if framing == 0:
            events.append(MESSAGE_END)
        elif framing == CHUNKED:
            self.state = _SIZE
            self.trailer_count = self.trailer_bytes = 0
        else:
            self.state = _LENGTH
            self.remaining = framing

    def _read_head(self, head: bytes) -> RequestHead:
        """Split a complete head, have h11 validate what it has not seen, apply shared rules."""
        check_raw_head(head)
        eol = head.find(b"\r\n")
        match = REQUEST_LINE.fullmatch(head, 0, eol)  # method token, visible target, version
        if match is None:
            raise Reject(400, "Invalid request line")
        method, target, raw_version = match.groups()
        headers = []
        fresh: list[tuple[bytes, tuple[bytes, bytes]]] = []
        if len(head) > eol + 4:
            known = _VALID_LINES
            for line in head[eol + 2 : -4].split(b"\r\n"):
                field = known.get(line)
                if field is None:
                    name, colon, value = line.partition(b":")
                    if not colon:
                        raise Reject(400, "Invalid header field line")
                    field = (name.lower(), value.strip(b" \t"))
                    fresh.append((line, field))
                headers.append(field)
        if fresh:
            try:
                # Field syntax is context-free: lines h11 accepted before need no second look.
                # HTTP/1.0 so h11 does not ask for a Host line it may not be shown;
                # inspect_head applies the Host, Content-Length and Transfer-Encoding rules.
                _Request(method=method, target=target, headers=[f for _, f in fresh], http_version=b"1.0")
            except _H11Error:
                raise Reject(400, "Malformed request head") from None
            _remember(fresh)
        version = _VERSIONS.get(raw_version) or raw_version.decode("ascii")
        return inspect_head(method, target, version, headers, self.limits)

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
        self._check_pending(pending, 0)

    def _check_pending(self, pending: bytearray, searched: int) -> None:
        """``pending`` holds no CRLF that ends before offset ``searched``."""
        state = self.state
        if state == _HEAD:
            self._check_head(pending, searched)
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

    def _check_head(self, pending: bytearray, searched: int) -> None:
        """Incrementally check an incomplete head; enforce the head budget."""
        scanned = self.scanned
        eol = pending.find(b"\r\n", max(scanned, searched - 1))
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
