"""WSGI (PEP 3333) app -> ASGI 3 app, run on a bounded pool of threads.

One request = one ``Exchange``: the event-loop side (``serve``) and the app's thread share
it through an event list guarded by a lock. The thread *posts* events (response start,
body chunks, "I need more request body", end, error) and wakes the loop with one
``call_soon_threadsafe`` only if no wake-up is already pending, so everything the thread
posts before the loop gets to run is handled in one batch. The loop answers the thread
through a ``SimpleQueue`` (request body, "buffer has room", "abort").

Thread hops per request:
- request without a body, or whose body arrived with its head: 0 (the loop receives it
  before the job is queued, so wsgi.input never has to ask for it);
- a small response (any iterable that finishes quickly, e.g. Flask's): the loop hands the
  job to a thread (a queue put) and the thread hands back start + whole body + end in one
  batch, sent as one ``http.response.body`` with more_body=False: one round trip in all;
- a streamed body adds one round trip per body chunk the app waits for, and a streamed
  response one wake-up per batch of chunks (never a blocking round trip per chunk).

Backpressure: the thread blocks while more than ``buffer_size`` bytes (default 512 KiB) of
its response are posted but not yet taken by the loop, and the loop takes a batch only once
the server accepted the previous one (``await send`` waits while the client is slow). So a
response holds at most about 2 x buffer_size plus one chunk in the bridge, plus the server's
transport buffer. Lists/tuples are already in memory: they are handed over whole and free
the thread at once; only a streaming iterable holds its thread while the client is slow,
and a send that stalls longer than ``send_timeout`` aborts the response (thread freed,
ASGI app raises so the server closes the connection); while other requests wait for a
thread, STARVED_STALL (2 s) is enough.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from typing import Any, Callable, Optional

from .appside import (
    ABORT, BODY, END, ERROR, ERROR500, FILE, GONE, INPUT, SPACE, START, AppSide, run_in_thread,
)
from .environ import build_environ
from .errors import ClientStalled as ClientStalled  # defined there for mypyc (builtin subclasses)
from .filewrapper import FileWrapper
from .pool import SERVED_BY_POOL, ThreadPool
from .streams import ClientDisconnected, ErrorStream, InputStream

logger = logging.getLogger("asgiserve.error")

JOIN_LIMIT = 64 * 1024  # chunks taken in one batch are joined into one send up to this size
# While requests wait for a thread, a thread blocked this long on a client that does not read
# (or send) is released. A client that slow, when the pool is full, is the one to drop.
STARVED_STALL = 2.0
_ERROR_BODY = b"Internal Server Error"
_ERROR_START = {
    "type": "http.response.start",
    "status": 500,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
}


_DISCONNECTED = ClientDisconnected("client disconnected")  # default reason; replaced by _abort()


class _Gone(Exception):
    """Internal: the listener saw http.disconnect while the response was streaming."""


class WSGIMiddleware:
    """Serve a PEP 3333 app as an ASGI 3 app.

    threads: size of this bridge's own pool (requests beyond it wait in a FIFO queue).
    send_timeout: seconds a streaming response may stall on a client that does not read
        before it is aborted (thread freed, connection closed).
    receive_timeout: the same for an app waiting on a request body that stopped arriving
        (defaults to send_timeout); the app then gets ClientStalled (an OSError) from wsgi.input.
    buffer_size: bytes of a streamed response the thread may run ahead of the client. Each time
        it is full the thread blocks until the loop takes the batch: at 128 KiB a 1 MiB response
        cost 23 context switches, at 512 KiB 7 (measured with perf stat under wrk).
    """

    def __init__(
        self,
        app: Callable[..., Any],
        threads: int = 32,
        send_timeout: float = 60.0,
        *,
        receive_timeout: Optional[float] = None,
        buffer_size: int = 512 * 1024,
        multiprocess: bool = True,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.app = app
        self.pool = ThreadPool(threads)
        self.send_timeout = float(send_timeout)
        self.receive_timeout = self.send_timeout if receive_timeout is None else float(receive_timeout)
        self.buffer_size = int(buffer_size)
        self.shutdown_timeout = shutdown_timeout
        self.base_environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }

    @property
    def stats(self) -> dict[str, Any]:
        """Pool saturation: threads, busy, idle, queued, completed, waited, total_wait, max_wait."""
        return self.pool.stats()

    def close(self, timeout: Optional[float] = None) -> bool:
        """Stop the pool's threads after their current requests; True if they all stopped."""
        return self.pool.shutdown(self.shutdown_timeout if timeout is None else timeout)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await Exchange(self, scope, receive, send).serve()
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect; closing before accept rejects it (403)
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise RuntimeError(f"WSGIMiddleware cannot handle ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return


class Exchange(AppSide):
    """One request, shared by its coroutine (loop side) and its pool thread (app side)."""

    __slots__ = (
        "receive", "send", "waiter", "body_done", "task", "timer", "blocked_since", "block_limit",
        "stalled", "listener", "finished",
    )

    def __init__(self, mw: WSGIMiddleware, scope: Any, receive: Any, send: Any) -> None:
        self.mw = mw
        self.loop = asyncio.get_running_loop()
        self.scope = scope
        self.receive = receive
        self.send = send
        self.environ: Any = None
        self.context: Optional[contextvars.Context] = None
        self.lock = threading.Lock()
        self.events: list[tuple[Any, ...]] = []
        self.wake_pending = False
        self.waiter: Optional[asyncio.Future[None]] = None
        self.inbox: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.buffered = 0
        self.writer_waiting = False
        self.aborted = False
        self.abort_exc: BaseException = _DISCONNECTED
        self.status: Optional[int] = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_sent = False
        self.completed = False  # the thread already posted the END (a first chunk = Content-Length)
        self.body_done = True
        self.task: Optional[asyncio.Task[Any]] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.blocked_since: Optional[float] = None
        self.block_limit = 0.0
        self.stalled = False
        self.listener: Optional[asyncio.Task[Any]] = None
        self.disconnected = False
        self.finished = False

    async def serve(self) -> None:
        scope = self.scope
        environ = self.environ = build_environ(scope, self.mw.base_environ, None, ErrorStream())
        limit: Optional[int] = None
        length = environ.get("CONTENT_LENGTH")
        if length is not None:
            limit = int(length) if length.isdigit() else None
        first, more = b"", False
        if limit or (length is None and "HTTP_TRANSFER_ENCODING" in environ):
            if environ.get("HTTP_EXPECT", "").lower() == "100-continue":
                more = True  # ask for the body (and so send "100 Continue") only when the app reads
            else:
                # Usually the body came with the head: taking it now saves the thread a hop.
                message = await self.receive()
                if message["type"] != "http.request":
                    return  # the client left before the app ran
                first, more = message.get("body", b""), message.get("more_body", False)
        self.body_done = not more
        environ["wsgi.input"] = InputStream(first, more, limit, self._fetch)
        self.context = contextvars.copy_context()
        pool = self.mw.pool
        if pool.wait_counts is not None:  # --metrics: this request counts as WSGI
            SERVED_BY_POOL.set(pool)
        pool.submit(run_in_thread, self)
        try:
            await self._pump()
        except _Gone:
            # The server reported http.disconnect. One last send lets a server that raises on
            # a closed connection (ASGI 2.4) do so; one that drops such sends stays quiet.
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self.stalled:
                self._abort(ClientDisconnected("request cancelled (server shutting down?)"))
                raise
            task = self.task
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            exc = ClientStalled(f"client did not read the response for {self.block_limit:g}s")
            self._abort(exc)
            logger.warning("WSGI response aborted: %s", exc)
            raise exc from None
        except BaseException as exc:
            self._abort(exc if isinstance(exc, ClientDisconnected) else ClientDisconnected(str(exc)))
            raise
        finally:
            if self.timer is not None:
                self.timer.cancel()
            if self.listener is not None and not self.listener.done():
                self.listener.cancel()
            # wsgi.input holds our _fetch: without this the request's whole object graph would
            # be a reference cycle, left to the cyclic GC (about 30k instructions per request).
            self.environ = None

    def _abort(self, exc: BaseException) -> None:
        with self.lock:
            if self.finished or self.aborted:
                return
            self.aborted = True
            self.abort_exc = exc
        self.inbox.put(ABORT)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _take(self) -> list[tuple[Any, ...]]:
        with self.lock:
            events = self.events
            if not events:
                self.wake_pending = False
                # Never the live list: the thread may append to it as soon as the lock is
                # released, and the caller would then handle those events and take them again.
                return []
            self.events = []
            self.wake_pending = False
            self.buffered = 0
            signal = self.writer_waiting
            self.writer_waiting = False
        if signal:
            self.inbox.put(SPACE)
        return events

    async def _pump(self) -> None:
        send = self.send
        while True:
            events = self._take()
            if not events:
                if self.disconnected:
                    raise _Gone
                waiter = self.waiter = self.loop.create_future()
                await waiter
                continue
            parts: list[bytes] = []
            for event in events:
                kind = event[0]
                if kind is BODY:
                    parts.append(event[1])
                    continue
                if parts:
                    await self._send_body(parts, True)
                    parts = []
                if kind is START:
                    await send(event[1])
                elif kind is END:
                    self.finished = True
                    await self._send_body(event[1], False)
                    return
                elif kind is INPUT:
                    await self._feed_input()
                elif kind is FILE:
                    self.finished = True
                    await self._send_file(event[1], event[2])
                    return
                elif kind is ERROR500:
                    self.finished = True
                    await send(_ERROR_START)
                    await send({"type": "http.response.body", "body": _ERROR_BODY, "more_body": False})
                    return
                elif kind is GONE:
                    self.finished = True
                    raise _Gone
                elif kind is ERROR:
                    self.finished = True
                    raise event[1]  # after the response started: the server closes the connection
            if parts:
                await self._send_body(parts, True)

    async def _send_body(self, parts: list[bytes], more: bool) -> None:
        send = self.send
        if len(parts) > 1:
            total = 0
            for part in parts:
                total += len(part)
            if total <= JOIN_LIMIT:
                parts = [b"".join(parts)]
        if not more and len(parts) <= 1:  # the common case: one final message, nothing to guard
            await send({"type": "http.response.body", "body": parts[0] if parts else b"", "more_body": False})
            return
        last = len(parts) - 1
        for i, part in enumerate(parts):
            flag = more or i < last
            await self._guarded(send, {"type": "http.response.body", "body": part, "more_body": flag})

    async def _guarded(self, send: Any, message: Any) -> None:
        """A send that may wait on the client: watched by the stall timer."""
        self._block(self.mw.send_timeout)
        try:
            await send(message)
        finally:
            self.blocked_since = None
        if self.disconnected:
            raise _Gone
        if self.listener is None and self.body_done:
            # Servers that drop sends after a disconnect (instead of raising) must not keep
            # the thread pulling a huge iterable for nobody: listen for http.disconnect.
            self.listener = self.loop.create_task(self._listen())

    async def _listen(self) -> None:
        # The app will not read the body any more (body_done), so request messages still
        # coming (e.g. the empty body of a GET nobody asked for) are dropped.
        while (await self.receive())["type"] != "http.disconnect":
            pass
        if not self.finished:
            self.disconnected = True
            self._abort(ClientDisconnected("client disconnected"))
            self._wake()

    def _block(self, limit: float) -> None:
        self.block_limit = limit
        now = self.blocked_since = self.loop.time()
        if self.timer is None:
            self.task = asyncio.current_task()
            self.timer = self.loop.call_at(now + min(limit, STARVED_STALL), self._check_stall)

    def _check_stall(self) -> None:
        """The thread waits on the client. Past send/receive_timeout it is released; and while
        requests wait for a thread, past STARVED_STALL already: stalled clients must not starve
        the pool (4 threads, 4 stalled downloads: the 5th request waits seconds, not a minute)."""
        self.timer = None
        since = self.blocked_since
        if since is None:
            return  # not waiting on the client now; the next wait re-arms the timer
        now = self.loop.time()
        if self.mw.pool.queued > 0 and self.block_limit > STARVED_STALL:
            self.block_limit = STARVED_STALL
        deadline = since + self.block_limit
        if now >= deadline - 0.01:
            if self.task is not None and not self.task.done():
                self.stalled = True
                self.task.cancel()
        else:
            self.timer = self.loop.call_at(min(deadline, now + STARVED_STALL), self._check_stall)

    async def _feed_input(self) -> None:
        self._block(self.mw.receive_timeout)
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            if not self.stalled:
                raise
            self.stalled = False
            task = self.task
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            self.body_done = True
            limit = self.block_limit
            self.inbox.put(ClientStalled(f"the request body stopped arriving for {limit:g}s"))
            return
        finally:
            self.blocked_since = None
        if message["type"] == "http.request":
            more = message.get("more_body", False)
            self.body_done = not more
            self.inbox.put((message.get("body", b""), more))
        else:
            self.body_done = True
            self.disconnected = True
            self.inbox.put(ClientDisconnected("client disconnected while the request body was being read"))

    async def _send_file(self, wrapper: FileWrapper, count: Optional[int]) -> None:
        try:
            if self.scope["method"] == "HEAD":
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            message: dict[str, Any] = {"type": "http.response.zerocopysend", "file": wrapper.filelike}
            if count is not None:
                message["count"] = count
            self._block(self.mw.send_timeout)
            try:
                await self.send(message)
            finally:
                self.blocked_since = None
        finally:
            try:
                wrapper.close()
            except Exception:
                logger.exception("Error closing a wsgi.file_wrapper file")

    # ================================ thread side ======================================
