"""One request/response cycle: the ASGI ``http`` scope, ``receive`` and ``send``.

Message order is enforced here (start, then body*, then nothing); framing is decided when
the first body message arrives, so a one-message response goes out as a single write with a
computed Content-Length. Errors never produce invalid bytes on the wire: before the response
has started the client gets a 500; after, the connection is closed.

The wire is the cycle's ``proto``, a ``channel.Channel``: the HTTP/1.1 connection, or one
HTTP/2 stream. The cycle never frames bytes itself.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import unquote, urlsplit

from ..http.events import RequestHead
from ..http.response import ResponseError, ResponseHead, prepare_head, prepare_links, prepare_trailers
from .errors import ClientDisconnected as ClientDisconnected  # defined there for mypyc (OSError subclass)

if TYPE_CHECKING:
    from .channel import Channel

logger = logging.getLogger("asgiserve.error")

# Response states, in order (TRAILING, between STARTED and DONE, is 3 so that DONE stays 2).
WAITING, STARTED, DONE = 0, 1, 2
TRAILING = 3  # the body is complete; http.response.trailers is due (the trailers extension)
# What becomes of the trailers an http.response.start with "trailers": True promised.
NO_TRAILERS, SEND_TRAILERS, DROP_TRAILERS = 0, 1, 2

DISCONNECT = {"type": "http.disconnect"}  # copied per use: apps may mutate messages
# The extensions every http scope offers. The scope gets its own copy of this dict (a TLS
# connection adds "tls" to it); the empty per-extension dicts are shared, as nothing writes them.
EXTENSIONS: dict[str, Any] = {"http.response.zerocopysend": {}, "http.response.trailers": {},
                              "http.response.early_hint": {}}
FILE_CHUNK = 256 * 1024
METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")}


def split_target(state: Any, target: bytes) -> tuple[str, bytes, bytes]:
    """(path, raw_path, query_string) of a request target, with root_path applied.

    Raises ValueError for a path that is not ASCII (the caller answers 400).
    """
    if target[:1] == b"/":
        raw_path, _, query = target.partition(b"?")
    elif target == b"*":
        raw_path, query = b"*", b""
    else:  # absolute-form (proxies); keep only the path and query
        parts = urlsplit(target)
        raw_path = parts.path or b"/"
        query = parts.query
    path = raw_path.decode("ascii")
    if raw_path.find(b"%") >= 0:  # not `in`: bytes.__contains__ tries the needle as an int first, raising and clearing a TypeError
        path = unquote(path)
    root_path = state.root_path
    if root_path and path != root_path and not path.startswith(state.root_prefix):
        # The proxy stripped the mount point, and ASGI's path includes it. "Under root_path"
        # is decided on a segment boundary: with /api, /apiary is not under it (-> /api/apiary).
        path = root_path + path
        raw_path = state.root_raw + raw_path
    return path, raw_path, query


# With 503 at --limit-concurrency: clients and load balancers may retry, after a second.
RETRY_AFTER = b"retry-after: 1\r\n"


class RequestCycle:
    __slots__ = (
        "proto", "head", "scope", "chunks", "body_done", "body_sent", "disconnected",
        "response", "head_info", "keep_alive", "expect_continue", "chunked", "remaining",
        "is_head", "bytes_sent", "status", "waiters", "start_time", "task", "discarding",
        "http10", "head_pending", "peer_eof", "body_allowed", "received", "seen", "seen_at",
        "trailers", "trailer_fields",
    )

    def __init__(self, proto: "Channel", head: RequestHead) -> None:
        self.proto = proto
        self.head = head
        self.scope: Any = None
        self.chunks: deque[bytes] = deque()
        self.body_done = False
        self.body_sent = False  # the final http.request (more_body=False) was handed out
        self.disconnected = False
        self.response = WAITING
        self.head_info: Optional[ResponseHead] = None
        self.chunked = False
        self.remaining: Optional[int] = None  # Content-Length still owed, when declared
        self.is_head = head.method == b"HEAD"
        self.http10 = head.http_version == "1.0"
        self.bytes_sent = 0
        self.status = 0
        self.waiters: Optional[list[asyncio.Future[None]]] = None
        self.start_time = 0.0
        self.task: Optional[asyncio.Task[None]] = None
        self.discarding = False
        self.head_pending = False  # start received, head not yet written
        self.body_allowed = False  # the response may carry body bytes (not HEAD, 1xx, 204, 304)
        self.peer_eof = False  # the client sent FIN: no more input, but it may still read
        self.received = 0  # body bytes that arrived (for --limit-request-body)
        self.seen = -1  # `received` at the sweep's last look, and when it last changed
        self.seen_at = 0.0
        self.trailers = NO_TRAILERS
        self.trailer_fields: list[tuple[bytes, bytes]]  # set when trailers are promised (no list per request)
        # Keep-alive by HTTP/1.1 and 1.0 rules; the parser found the fields (RequestHead).
        keep_alive = not self.http10
        connection = head.connection
        if connection is not None:
            tokens = connection.lower()
            if tokens.find(b"close") >= 0:  # find, not `in`: see split_target
                keep_alive = False
            elif self.http10 and tokens.find(b"keep-alive") >= 0:
                keep_alive = True
        self.keep_alive = keep_alive
        self.expect_continue = head.expect_continue and not self.http10

    # -- body arriving from the protocol ------------------------------------------------
    def feed_body(self, data: bytes) -> None:
        self.received += len(data)
        if self.discarding or self.disconnected:
            if self.discarding:  # the response is done, but the client is still busy sending
                self.proto.idle_since = self.proto.loop.time()
            return
        self.chunks.append(data)
        self.proto.buffered += len(data)
        self._wake()

    def end_body(self) -> None:
        self.body_done = True
        self.expect_continue = False
        if self.waiters:
            self._wake()

    def response_state(self) -> int:
        return self.response

    def response_started(self) -> bool:
        return self.response != WAITING

    def discard_body(self) -> None:
        """Response done but body unread: drop what is buffered and what still arrives."""
        self.discarding = True
        if self.chunks:
            self.proto.body_consumed(sum(map(len, self.chunks)))
            self.chunks.clear()

    def peer_closed(self) -> None:
        self.peer_eof = True
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiters = self.waiters
        if waiters:
            self.waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- running the app ---------------------------------------------------------------
    def start(self) -> None:
        proto = self.proto
        state = proto.state
        if state.access_log_enabled:
            self.start_time = time.perf_counter()
        try:
            self.scope = self.build_scope()
        except ValueError:
            self.reject(400, "Bad Request: invalid request target")
            return
        if state.limit_concurrency is not None and state.active_requests >= state.limit_concurrency:
            self.reject(503, "Service Unavailable: the server is at its concurrency limit")
            return
        self.task = state.begin_request(self.run_asgi())

    def answered(self, status: int) -> None:
        """The server answered this request itself (an error in its body): the app's response,
        if any, goes nowhere, and the access log says what the client got."""
        self.response = DONE
        self.status = status
        self.log_access()
        self._wake()

    def reject(self, status: int, message: str) -> None:
        self.response = DONE
        self.status = status
        self.proto.write_error(status, message, RETRY_AFTER if status == 503 else b"")
        self.log_access()
        self.proto.cycle_finished(self, False)

    def build_scope(self) -> dict[str, Any]:
        proto = self.proto
        state = proto.state
        head = self.head
        path, raw_path, query = split_target(state, head.target)
        root_path = state.root_path
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": head.http_version,
            "server": proto.server,
            "client": proto.client,
            "scheme": proto.scheme,
            "method": METHODS.get(head.method) or head.method.decode("ascii"),
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": head.headers,
            "state": state.lifespan_state.copy(),
            "extensions": EXTENSIONS.copy(),
        }
        if proto.tls is not None:
            scope["extensions"]["tls"] = dict(proto.tls)
        if proto.proxy is not None and head.forwarded:
            proto.proxy.apply(scope)
        return scope

    async def run_asgi(self) -> None:
        try:
            result = await self.proto.state.app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.app_failed(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if result is not None:
                logger.error("ASGI callable returned a value instead of None: %r", result)
            if self.response == WAITING:
                if self.peer_eof or self.disconnected:
                    logger.debug("Client closed the connection before a response was sent.")
                else:
                    logger.error("ASGI callable returned without starting a response.")
                self.fail_response()
            elif self.response == STARTED:
                logger.error("ASGI callable returned without completing the response.")
                if self.head_pending:
                    self.fail_response()
                else:
                    self.finish(False)
            elif self.response == TRAILING:
                # The body is complete: end the response properly, without the promised trailers.
                logger.error("ASGI callable returned without sending http.response.trailers.")
                self.end_with_trailers([])
        finally:
            self.proto.state.end_request(self.task)

    def app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            if self.response != DONE:
                self.finish(False)
            return
        if self.disconnected and isinstance(exc, OSError):
            logger.debug("Client disconnected during request: %r", exc)
        elif isinstance(exc, OSError) and (self.response == STARTED or self.response == TRAILING):
            # I/O trouble mid-response (e.g. a bridge giving up on a client that stopped
            # reading): one line, not a traceback for something the app did not do wrong.
            logger.warning("Response aborted: %s: %s", type(exc).__name__, exc)
        elif self.response == DONE:
            logger.error("Exception in ASGI application after the response was sent", exc_info=exc)
        else:
            logger.error("Exception in ASGI application", exc_info=exc)
        if self.response == WAITING or (self.response == STARTED and self.head_pending):
            self.fail_response()  # nothing is on the wire yet: a clean 500 is still possible
        elif self.response == STARTED or self.response == TRAILING:
            self.finish(False)  # a partial response can't be framed honestly: close

    def fail_response(self) -> None:
        """Answer 500 (the response has not started) and close the connection."""
        self.response = DONE
        self.status = 500
        proto = self.proto
        if not proto.closed and not self.disconnected:
            proto.write_error(500, "Internal Server Error")
        self.log_access()
        proto.cycle_finished(self, False)

    # -- receive ---------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        while True:
            if self.disconnected or self.response == DONE:
                return dict(DISCONNECT)
            if self.chunks:
                chunks = self.chunks
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self.proto.body_consumed(len(body))
                more = not self.body_done
                self.body_sent = not more
                return {"type": "http.request", "body": body, "more_body": more}
            if self.body_done:
                if not self.body_sent:
                    self.body_sent = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                if self.peer_eof:
                    return dict(DISCONNECT)
            elif self.expect_continue and self.response == WAITING:
                self.expect_continue = False
                self.proto.write_continue()
            # Several tasks may wait at once (e.g. a disconnect listener beside the handler),
            # and any one of them may be cancelled: each gets its own future.
            waiter = self.proto.loop.create_future()
            if self.waiters is None:
                self.waiters = [waiter]
            else:
                self.waiters.append(waiter)
            await waiter

    # -- send ------------------------------------------------------------------------------
    async def send(self, message: Any) -> None:
        mtype = message["type"]
        if mtype == "http.response.body":
            if self.response != STARTED:
                raise RuntimeError(
                    "Unexpected ASGI message 'http.response.body': "
                    + ("the response was not started" if self.response == WAITING else
                       "the body is complete, http.response.trailers is due" if self.response == TRAILING else
                       "the response is complete")
                )
            if self.disconnected or self.proto.closed:
                raise ClientDisconnected("client disconnected")
            body = message.get("body", b"")
            more = True if message.get("more_body", False) else False  # a bool even if the app's is not (mypyc)
            if type(body) is not bytes:
                if isinstance(body, (bytearray, memoryview)):
                    body = bytes(body)
                else:
                    raise TypeError(f"http.response.body 'body' must be bytes, got {type(body).__name__}")
            self.write_body(body, more)
            if more and self.proto.write_paused:
                await self.proto.drain()
            return
        if mtype == "http.response.start":
            if self.response != WAITING:
                raise RuntimeError("Unexpected ASGI message 'http.response.start': the response was already started")
            if self.disconnected or self.proto.closed:
                raise ClientDisconnected("client disconnected")
            try:
                self.head_info = prepare_head(message["status"], message.get("headers", ()))
            except (ResponseError, TypeError, ValueError) as exc:
                raise RuntimeError(f"Invalid http.response.start: {exc}") from None
            self.status = self.head_info.status
            self.body_allowed = not self.is_head and not self.head_info.bodiless
            self.response = STARTED
            self.head_pending = True
            if message.get("trailers"):
                self.trailers = self.trailer_mode()
                self.trailer_fields = []  # gathered over more_trailers messages
            return
        if mtype == "http.response.zerocopysend":
            await self.send_file(message)
            return
        if mtype == "http.response.trailers":
            self.send_trailers(message)
            return
        if mtype == "http.response.early_hint":
            self.send_early_hint(message)
            return
        raise RuntimeError(f"Unexpected ASGI message type {mtype!r} for an http scope")

    def write_body(self, body: bytes, more: bool) -> None:
        size = len(body)
        if self.head_pending:
            # First body message: the channel decides framing and writes the head with it.
            head = self.head_info
            assert head is not None
            if head.content_length is not None and not self.is_head:
                if size > head.content_length:
                    raise RuntimeError("Response content longer than Content-Length")
                if not head.bodiless:
                    self.remaining = head.content_length
            self.head_pending = False
            first = True
        else:
            first = False
            if self.remaining is not None and size > self.remaining:
                self.finish(False)
                raise RuntimeError("Response content longer than Content-Length")
        remaining = self.remaining
        if remaining is not None:
            remaining -= size
            self.remaining = remaining
        if size and self.body_allowed:
            self.bytes_sent += size
        if not more and self.trailers == SEND_TRAILERS:
            # The last body message: the response stays open on the wire for the trailers.
            self.proto.write_response(self, first, body, True)
            if remaining:
                self.finish(False)  # shorter than its Content-Length
            else:
                self.response = TRAILING
            return
        self.proto.write_response(self, first, body, more)
        if not more:
            self.finish(remaining is None or remaining == 0 or self.is_head)

    # -- the trailers and early hints extensions ----------------------------------------------
    def trailer_mode(self) -> int:
        """Whether trailers promised by http.response.start can go on the wire: only if the client
        said it takes them (``TE: trailers``, as the extension says), the response has a body, and
        the protocol can carry them after it (HTTP/2; HTTP/1.1 when chunked, not Content-Length).
        Otherwise they are dropped, and the response ends with its last body message."""
        if not self.body_allowed or not self.proto.trailers_possible(self):
            return DROP_TRAILERS
        for name, value in self.head.headers:
            if name == b"te" and b"trailers" in [t.strip().split(b";")[0] for t in value.lower().split(b",")]:
                return SEND_TRAILERS
        return DROP_TRAILERS

    def send_trailers(self, message: Any) -> None:
        if self.trailers == DROP_TRAILERS and self.response == DONE:
            return  # they could not go on this response (see trailer_mode), which is complete: dropped
        if self.disconnected or self.proto.closed:
            raise ClientDisconnected("client disconnected")
        if self.response != TRAILING:
            if self.response == WAITING:
                reason = "the response was not started"
            elif not self.trailers:
                reason = "http.response.start did not set 'trailers': True"
            elif self.response == STARTED:
                reason = "the body is not complete (more_body was not False yet)"
            else:
                reason = "the response is complete"
            raise RuntimeError(f"Unexpected ASGI message 'http.response.trailers': {reason}")
        try:
            fields = prepare_trailers(message.get("headers", ()))
        except (ResponseError, TypeError, ValueError) as exc:
            raise RuntimeError(f"Invalid http.response.trailers: {exc}") from None
        self.trailer_fields += fields
        if not message.get("more_trailers", False):
            self.end_with_trailers(self.trailer_fields)

    def end_with_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.proto.write_trailers(self, fields)
        self.finish(True)

    def send_early_hint(self, message: Any) -> None:
        """http.response.early_hint: a 103 with Link fields, while the final head is not yet written
        (before http.response.start, or after it but before the first body message). Later the
        hint can no longer precede the response and is dropped, as the extension allows."""
        if self.disconnected or self.proto.closed:
            raise ClientDisconnected("client disconnected")
        try:
            links = prepare_links(message.get("links", ()))
        except (ResponseError, TypeError, ValueError) as exc:
            raise RuntimeError(f"Invalid http.response.early_hint: {exc}") from None
        if links and (self.response == WAITING or (self.response == STARTED and self.head_pending)):
            self.proto.write_early_hint(self, links)

    async def send_file(self, message: Any) -> None:
        """http.response.zerocopysend: send a file without reading it whole.

        Uses the loop's native sendfile (os.sendfile) where the transport allows it (asyncio's
        plain TCP and unix transports); uvloop's transports do not, and there the file is read
        with os.pread in bounded pieces through the normal body path. Either way framing,
        Content-Length accounting and backpressure are the ones every body goes through.
        """
        if self.response != STARTED:
            raise RuntimeError("Unexpected ASGI message 'http.response.zerocopysend' before http.response.start")
        file = message["file"]
        fd = file.fileno()
        offset = message.get("offset")
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        left = message.get("count")
        if left is None:
            left = max(0, os.fstat(fd).st_size - offset)
        more = message.get("more_body", False)
        if left and self.native_sendfile:
            sent = await self.sendfile_native(file, offset, left)
            offset += sent
            left -= sent
        while left > 0:
            data = os.pread(fd, min(FILE_CHUNK, left), offset)
            if not data:
                break
            offset += len(data)
            left -= len(data)
            await self.send({"type": "http.response.body", "body": data, "more_body": True})
        await self.send({"type": "http.response.body", "body": b"", "more_body": more})

    @property
    def native_sendfile(self) -> bool:
        loop = self.proto.loop
        return (
            isinstance(loop, asyncio.BaseEventLoop)  # uvloop has no native sendfile
            and isinstance(self.proto.transport, asyncio.Transport)
            and self.body_allowed
            and not self.proto.closed
        )

    async def sendfile_native(self, file: Any, offset: int, count: int) -> int:
        """Hand up to ``count`` bytes of ``file`` to the kernel; returns how many went (0: not possible).

        Only for identity framing (Content-Length or close-delimited); chunked bodies take the
        pread path, so a chunk header is never written without knowing its data can follow.
        """
        if self.head_pending:
            self.write_body(b"", True)  # the head alone; framing decided as for any streamed body
        if self.chunked:
            return 0
        if self.remaining is not None and count > self.remaining:
            raise RuntimeError("Response content longer than Content-Length")
        try:
            sent: int = await self.proto.loop.sendfile(self.proto.transport, file, offset, count, fallback=False)
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            return 0
        if self.remaining is not None:
            self.remaining -= sent
        self.bytes_sent += sent
        return sent

    def finish(self, ok: bool) -> None:
        if self.response == DONE:
            return
        if self.head_pending:
            ok = False  # started but no body message ever came: nothing valid was written
        self.response = DONE
        proto = self.proto
        if not ok:
            if self.remaining and not self.disconnected:  # a client that left is not an app error
                logger.error("Response shorter than its Content-Length; closing the connection.")
            self.keep_alive = False
            proto.abort()  # a truncated response: don't let it linger on a slow client
        if proto.state.access_log_enabled:
            self.log_access()
        if self.waiters:
            self._wake()
        proto.cycle_finished(self, self.keep_alive)

    def log_access(self) -> None:
        state = self.proto.state
        if state.access_log_enabled and self.scope is not None:
            headers = self.head_info.headers if self.head_info is not None else []
            state.access_logger.log(
                self.scope, self.status, headers, self.bytes_sent, time.perf_counter() - self.start_time
            )
