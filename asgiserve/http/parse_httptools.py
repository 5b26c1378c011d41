"""httptools (llhttp) adapter: bytes in, parser events out.

One ``HttptoolsParser`` per connection; its bound callbacks turn llhttp callbacks into events.
It owns llhttp's quirks, and nothing else (no keep-alive, no writing, no ASGI):

* ``Upgrade``/CONNECT: llhttp stops after such a head, *skipping its body*, and raises
  ``HttpParserUpgrade(offset)`` (uvicorn#2722, httptools#124). Unless the head is a WebSocket
  request to hand over (then the adapter emits ``Upgrade`` with the bytes from ``offset`` on and
  stops), it is served as plain ``http``: the adapter drops the premature MessageEnd, starts a
  fresh llhttp parser, replays the body framing through a synthetic head whose callbacks are
  swallowed, and feeds the rest: the app gets the body and pipelined requests after it are
  parsed normally.
* Leniencies: ``lenient_keep_alive`` (parse requests pipelined after ``Connection: close``
  instead of failing; the core decides what to do with them) and ``lenient_version`` (so
  HTTP/1.2 or HTTP/3.0 reach ``inspect_head`` and get 505 like on h11).
* llhttp has no size limits and buffers a header line inside httptools until it is complete,
  so the adapter counts the raw bytes of an incomplete head (or trailer section) per feed
  and stops at ``HeadLimits.budget`` (see ``_head_incomplete``).
"""
from __future__ import annotations

from typing import Optional

import httptools

from .events import MESSAGE_END, BodyChunk, Event, ParseError, RequestHead, Upgrade
from .framing import CHUNKED, check_trailer, inspect_head
from .limits import FieldMeter, HeadLimits, Reject

_IDLE, _HEAD, _BODY = 0, 1, 2
_SYNTHETIC_CHUNKED = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
_SYNTHETIC_LENGTH = b"PUT / HTTP/1.1\r\nContent-Length: %d\r\n\r\n"


class HttptoolsParser:
    """``RequestParser`` over ``httptools.HttpRequestParser``."""

    __slots__ = (
        "limits", "max_fields", "target_fast_max", "parser", "feed_data", "events", "emit",
        "state", "url", "headers", "framing", "skip_head", "pending", "tail", "tail_fresh",
        "tail_bytes", "meter", "dead", "upgrades", "upgrading",
    )

    def __init__(self, limits: HeadLimits, upgrades: bool = False) -> None:
        self.limits = limits
        self.upgrades = upgrades
        self.upgrading = -1  # index in events of a WebSocket head just emitted (llhttp is about to stop)
        self.max_fields = limits.fields  # on_header's fast path takes this many fields (0: trailers)
        self.target_fast_max = limits.target_fast_max
        self.events: list[Event] = []
        self.emit = self.events.append
        self.state = _IDLE
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.framing = 0  # of the current (or last) message: body length or CHUNKED
        self.skip_head = False
        self.pending = 0  # raw bytes of the incomplete head
        self.tail = False  # chunked: a chunk-size line was read and no data followed yet
        self.tail_fresh = False
        self.tail_bytes = 0
        self.meter: Optional[FieldMeter] = None  # partial header line of an incomplete head
        self.dead = False
        self._new_parser()

    def _new_parser(self) -> None:
        parser = httptools.HttpRequestParser(self)
        parser.set_dangerous_leniencies(lenient_keep_alive=True, lenient_version=True)
        self.parser = parser
        self.feed_data = parser.feed_data

    # -- RequestParser ------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        if self.dead:
            return []
        events: list[Event] = []
        self.events = events
        self.emit = events.append
        while data:
            mark = len(events)
            start_state = self.state
            try:
                self.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                if self.upgrading >= 0:
                    if events and events[-1] is MESSAGE_END:
                        events.pop()
                    self.dead = True
                    events.append(Upgrade(data[exc.args[0]:]))
                    break
                data = self._resume_after_upgrade(data, exc.args[0])
                continue
            except httptools.HttpParserCallbackError as exc:
                reject = exc.__context__
                if not isinstance(reject, Reject):
                    raise  # a bug in a callback, not bad input: let it surface
                self._fail(reject.status, reject.reason)
            except httptools.HttpParserError as exc:
                self._fail(400, "Malformed request: %s" % exc)
            else:
                if self.upgrading >= 0:  # llhttp did not see the upgrade our rules saw: refuse it
                    del events[self.upgrading:]
                    self.upgrading = -1
                    self._fail(400, "Invalid WebSocket upgrade request")
                elif self.state == _HEAD:
                    self._head_incomplete(data, start_state, mark)
                elif self.tail and self.state == _BODY:
                    self._tail_incomplete(data)
            break
        return events

    def head_pending(self) -> bool:
        return self.state == _HEAD and not self.dead

    def feed_eof(self) -> list[Event]:
        if self.dead or self.state == _IDLE:
            return []
        self.dead = True
        return [ParseError(400, "Connection closed in the middle of a request")]

    # -- llhttp callbacks (hot path) -----------------------------------------------------
    def on_message_begin(self) -> None:
        self.state = _HEAD
        self.url = b""
        self.headers = []
        self.max_fields = self.limits.fields

    def on_url(self, url: bytes) -> None:
        url = self.url + url
        self.url = url
        if len(url) > self.target_fast_max:
            self.limits.check_request_line(self.parser.get_method(), url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only the count here (it bounds this list within one feed); field sizes are checked
        # by inspect_head, or by _head_incomplete when a feed ends inside the head.
        headers = self.headers
        if len(headers) >= self.max_fields:  # too many, or a trailer field
            self._checked_field(headers, name.lower(), value.rstrip(b" \t"))
            return
        headers.append((name.lower(), value.rstrip(b" \t")))  # llhttp strips leading OWS only

    def on_headers_complete(self) -> None:
        self.state = _BODY
        if self.skip_head:
            self.skip_head = False
            if self.framing == CHUNKED:
                self._expect_trailers()
            return
        parser = self.parser
        method = parser.get_method()
        version = parser.get_http_version()
        headers = self.headers
        url = self.url
        head = inspect_head(method, url, version, headers, self.limits)
        self.framing = head.framing
        if head.upgrade and self.upgrades:
            self.upgrading = len(self.events)
        self.emit(head)
        if head.framing == CHUNKED:
            self._expect_trailers()

    def _expect_trailers(self) -> None:
        """A chunked body follows: llhttp reports its trailer fields through on_header, which
        sends each one to _checked_field (checked, then dropped with the list) until the next
        message begins. (Not a list subclass overriding append: compiled code bypasses that.)"""
        self.headers = []
        self.max_fields = 0

    def _checked_field(self, headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
        if len(headers) >= self.limits.fields:
            raise Reject(431, "Too many header fields")
        self.limits.check_field(len(headers) + 1, name, value)  # a trailer field
        check_trailer(name)
        headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.tail = False
        self.emit(BodyChunk(body))

    def on_chunk_header(self) -> None:
        self.tail = self.tail_fresh = True
        self.tail_bytes = 0

    def on_message_complete(self) -> None:
        self.state = _IDLE
        self.tail = False
        self.emit(MESSAGE_END)

    # -- rare paths ----------------------------------------------------------------------
    def _fail(self, status: int, reason: str) -> None:
        self.dead = True
        self.emit(ParseError(status, reason))

    def _resume_after_upgrade(self, data: bytes, offset: int) -> bytes:
        """llhttp paused at ``offset`` after an Upgrade/CONNECT head and skipped its body."""
        framing = self.framing
        self._new_parser()
        if framing:
            events = self.events
            if events and events[-1] is MESSAGE_END:
                events.pop()
            self.skip_head = True
            self.feed_data(_SYNTHETIC_CHUNKED if framing == CHUNKED else _SYNTHETIC_LENGTH % framing)
        return data[offset:]

    def _head_incomplete(self, data: bytes, start_state: int, mark: int) -> None:
        """Account for a head still incomplete after this feed: stream the field-size rule
        over its last, partial line and enforce the raw-byte budget.

        httptools reports no offsets, so where the head began is inferred: at the start of the
        data if no message ended in it, else after the last message that did. That one ends
        with CRLFCRLF unless it had a Content-Length body, whose length in this data is known
        from its BodyChunks. Inexact only if such a body itself contains CRLFCRLF, and then it
        undercounts (never rejects a legal head). A partial header line always starts after an
        LF of the head itself, so the field-size rule is exact.
        """
        events = self.events
        if start_state == _HEAD and MESSAGE_END not in events[mark:]:
            self.pending += len(data)
            start = 0
        else:
            if start_state == _IDLE and MESSAGE_END not in events[mark:]:
                start = len(data) - len(data.lstrip(b"\r\n"))
            else:
                end = data.rfind(b"\r\n\r\n")
                start = end + 4 if end >= 0 else 0
                if self.framing > 0:
                    index = len(events) - 1
                    while index >= mark:
                        event = events[index]
                        if type(event) is BodyChunk:
                            start += len(event.data)
                        elif type(event) is RequestHead:
                            break
                        index -= 1
            # Empty lines before a request line are skipped (RFC 9112 2.2), also a bare LF, or
            # the LF that ends the previous head when a read cut its CRLFCRLF: none of them may
            # be taken for the line break before a header field.
            while start < len(data) and data[start] in b"\r\n":
                start += 1
            self.pending = max(0, len(data) - start)
            self.meter = None
        try:
            self.limits.check_fields(self.headers)
            newline = data.rfind(b"\n", start)
            if newline >= 0:
                self.meter = FieldMeter()
                self.meter.check(self.limits, data[newline + 1 :])
            elif self.meter is not None:
                self.meter.check(self.limits, data[start:] if start else data)
            self.limits.check_pending(self.pending)
        except Reject as reject:
            self._fail(reject.status, reject.reason)

    def _tail_incomplete(self, data: bytes) -> None:
        """A trailer section (buffered inside httptools) is still incomplete after this feed.

        The last chunk-size line ended with an LF in the feed that announced it, so the partial
        trailer line is exactly what follows the last LF. Every later feed without chunk data
        is trailer bytes only and counts against the budget.
        """
        try:
            newline = data.rfind(b"\n")
            if newline >= 0:
                self.meter = FieldMeter()
                self.meter.check(self.limits, data[newline + 1 :])
            elif self.meter is not None:
                self.meter.check(self.limits, data)
            if self.tail_fresh:
                self.tail_fresh = False
            else:
                self.tail_bytes += len(data)
                self.limits.check_pending(self.tail_bytes)
        except Reject as reject:
            self._fail(reject.status, reject.reason)
