"""The app's side of a bridged request: what runs on the pool thread.

``AppSide`` is the thread half of ``bridge.Exchange`` (split out to keep modules small): it
calls the WSGI app, implements start_response/write()/wsgi.input's fetch, and posts events
for the loop half. Every post goes through ``_post``/``_write`` under the exchange's lock,
and wakes the loop only when no wake-up is already pending.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from .filewrapper import MIN_BLOCK, FileWrapper
from .response import content_length, encode_headers, parse_status
from .streams import ClientDisconnected

if TYPE_CHECKING:
    from .bridge import WSGIMiddleware

logger = logging.getLogger("asgiserve.error")

# Event kinds posted by the thread (compared by identity).
START, BODY, END, INPUT, FILE, ERROR, ERROR500, GONE = "start", "body", "end", "input", "file", "error", "500", "gone"
ABORT, SPACE = object(), object()  # loop -> thread tokens


class AppSide:
    """Thread-side methods of ``bridge.Exchange``, and the state they share with its loop side."""

    # The state the thread side shares with the loop side (bridge.Exchange sets it up).
    __slots__ = (
        "mw", "loop", "scope", "environ", "context", "lock", "events", "wake_pending", "inbox", "buffered",
        "writer_waiting", "aborted", "abort_exc", "status", "headers", "headers_sent", "completed",
        "disconnected",
    )
    mw: WSGIMiddleware
    loop: asyncio.AbstractEventLoop
    scope: Any
    environ: Any
    context: Optional[contextvars.Context]
    lock: threading.Lock
    events: list[tuple[Any, ...]]
    wake_pending: bool
    inbox: "queue.SimpleQueue[Any]"
    buffered: int
    writer_waiting: bool
    aborted: bool
    abort_exc: BaseException
    status: Optional[int]
    headers: list[tuple[bytes, bytes]]
    headers_sent: bool
    completed: bool
    disconnected: bool

    def _wake(self) -> None:
        raise NotImplementedError

    def _call_loop(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: nobody will ever take the response
            self.aborted = True
            self.abort_exc = ClientDisconnected("the event loop is closed")
            raise self.abort_exc from None

    def _post(self, *events: tuple[Any, ...]) -> None:
        with self.lock:
            if self.aborted:
                raise self.abort_exc
            self.events.extend(events)
            wake = not self.wake_pending
            self.wake_pending = True
        if wake:
            self._call_loop()

    def _fetch(self) -> tuple[bytes, bool]:
        """wsgi.input wants the next body chunk: ask the loop and wait for it."""
        self._post((INPUT,))
        item = self.inbox.get()
        if type(item) is tuple:
            return item
        if item is ABORT:
            raise self.abort_exc
        raise item

    def start_response(self, status: Any, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        code = parse_status(status)
        self.headers = encode_headers(headers)
        self.status = code
        return self._write_callable  # not stored on self: that would be a reference cycle

    def _start_message(self) -> dict[str, Any]:
        if self.status is None:
            raise RuntimeError("the WSGI app produced a response body without calling start_response()")
        return {"type": "http.response.start", "status": self.status, "headers": self.headers}

    def _write(self, data: bytes) -> None:
        """Hand a non-empty chunk to the loop; block while too much is waiting for the client."""
        start = None if self.headers_sent else self._start_message()
        with self.lock:
            if self.aborted:
                raise self.abort_exc
            if start is not None:
                self.events.append((START, start))
                self.headers_sent = True
            self.events.append((BODY, data))
            self.buffered += len(data)
            wake = not self.wake_pending
            self.wake_pending = True
            wait = self.writer_waiting = self.buffered > self.mw.buffer_size
        if wake:
            self._call_loop()
        if wait and self.inbox.get() is ABORT:
            raise self.abort_exc

    def _write_callable(self, data: bytes) -> None:
        """The legacy write() returned by start_response()."""
        if type(data) is not bytes:
            data = _as_bytes(data)
        if data:
            self._write(data)

    def run_app(self) -> None:
        environ = self.environ
        try:
            result = self.mw.app(environ, self.start_response)
        except BaseException as exc:
            self._fail(exc)
            return
        error: Optional[BaseException] = None
        tail: Optional[list[bytes]] = None
        handed_off = False
        try:
            if type(result) is list or type(result) is tuple:
                # Already in memory: hand it over whole with the end (frees the thread at once).
                tail = [c if type(c) is bytes else _as_bytes(c) for c in result]
            elif type(result) is FileWrapper:
                handed_off = self._send_file_handoff(result)
                if not handed_off:  # no sendfile path: read it here in blocks
                    self._iterate(_file_blocks(result))
            else:
                self._iterate(result)
        except BaseException as exc:
            error = exc
        if not handed_off:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as exc:
                    if error is None:
                        logger.error("Exception in the close() of a WSGI response", exc_info=exc)
                    else:
                        logger.error("Exception in close() after an error in a WSGI response", exc_info=exc)
        errors = environ["wsgi.errors"]
        if errors._partial:
            errors.flush()
        if error is not None:
            self._fail(error)
            return
        if self.completed:
            return  # the END went out with the body
        try:
            start = None if self.headers_sent else self._start_message()
        except RuntimeError as exc:
            self._fail(exc)
            return
        events: list[tuple[Any, ...]] = []
        if start is not None:
            events.append((START, start))
            self.headers_sent = True
        events.append((END, [c for c in tail if c] if tail else []))
        try:
            self._post(*events)
        except ClientDisconnected:
            pass  # the loop already gave up on this request

    def _iterate(self, iterable: Any) -> None:
        write = self._write
        for chunk in iterable:
            if type(chunk) is not bytes:
                chunk = _as_bytes(chunk)
            if chunk:
                if self.completed:
                    raise RuntimeError("the WSGI app yielded more than its Content-Length")
                if not self.headers_sent and self.status is not None and len(chunk) == content_length(self.headers):
                    # The first chunk is the whole declared body (Flask, Django): head, body and
                    # end go to the loop in one step, as for a list, instead of a streamed body
                    # and a separate end. The iterable is still drained and closed here.
                    self.headers_sent = True
                    self._post((START, self._start_message()), (END, [chunk]))
                    self.completed = True
                else:
                    write(chunk)
            elif self.aborted:
                raise self.abort_exc

    def _send_file_handoff(self, wrapper: FileWrapper) -> bool:
        """Give a real file to the server's zero-copy path; False when that is not possible."""
        if "http.response.zerocopysend" not in (self.scope.get("extensions") or ()):
            return False
        if wrapper.fileno() is None:
            return False
        start = None if self.headers_sent else self._start_message()
        events: list[tuple[Any, ...]] = []
        if start is not None:
            events.append((START, start))
            self.headers_sent = True
        events.append((FILE, wrapper, content_length(self.headers)))
        self._post(*events)
        return True

    def _fail(self, exc: BaseException) -> None:
        if self.completed:  # the response is already whole on its way: only the log can tell
            logger.error("Exception in WSGI application after the response was sent", exc_info=exc)
            return
        if self.aborted and isinstance(exc, ClientDisconnected):
            logger.debug("WSGI request ended early: %s", exc)
            return
        try:
            if self.disconnected and isinstance(exc, OSError):
                # The app failed because the client left mid-upload: nobody to answer.
                logger.debug("WSGI app stopped after the client disconnected: %r", exc)
                self._post((GONE,))
            elif self.headers_sent:
                self._post((ERROR, exc))  # the loop raises it; the server logs and closes
            else:
                logger.error("Exception in WSGI application", exc_info=exc)
                self._post((ERROR500,))
        except ClientDisconnected:
            pass


def run_in_thread(exchange: AppSide) -> None:
    assert exchange.context is not None
    exchange.context.run(exchange.run_app)


def _file_blocks(wrapper: FileWrapper) -> Any:
    read = wrapper.filelike.read
    size = max(wrapper.blksize, MIN_BLOCK)
    while True:
        data = read(size)
        if not data:
            return
        yield data


def _as_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"a WSGI response body must yield bytes, got {type(chunk).__name__}")
