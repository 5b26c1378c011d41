"""Accepting with a connection limit (--limit-connections).

asyncio's servers (and uvloop's) accept for as long as they serve: there is no public way to
stop accepting for a while without closing the listening socket, which the other workers
share. So with a limit, the process accepts itself: the listening socket is watched with
``add_reader``, each accepted socket goes to ``loop.connect_accepted_socket`` (TLS handshake
included), and at the limit the reader is removed. Meanwhile new connections wait in the
kernel's backlog, or another worker takes them. Before pausing, the connection idle for
longest (a keep-alive connection between requests) is closed to make room: a busy client
waiting is worse than an idle one reconnecting.

Without --limit-connections the loop's own server is used (its accept path is in C on uvloop).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from .state import ServerState

logger = logging.getLogger("asgiserve.error")

BATCH = 64  # accepts per readiness callback, so one busy socket cannot starve the loop


class Acceptor:
    """Accepts on one listening socket while ``state`` has fewer than ``limit`` connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any],
                 state: "ServerState", limit: int, context: Optional[ssl.SSLContext],
                 handshake_timeout: Optional[float]) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.state = state
        self.limit = limit
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.reading = False
        self.closed = False
        self.pending: set[asyncio.Task[Any]] = set()  # handshakes under way
        sock.setblocking(False)

    def start(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def pause(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.pause()
        self.closed = True

    def count(self) -> int:
        """Connections that hold a slot: open ones, and TLS handshakes under way. One the server
        is closing (a lingering close, up to a few seconds) no longer does."""
        state = self.state
        return len(state.connections) - state.closing + len(self.pending)

    def _accept(self) -> None:
        for _ in range(BATCH):
            if self.count() >= self.limit:
                self._make_room()
                self.pause()
                self.state.accepting_paused()
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE, ENOBUFS...: back off a little, as asyncio does
                logger.warning("Error accepting a connection: %s; retrying in 1s.", exc)
                self.pause()
                self.loop.call_later(1.0, self.start)
                return
            conn.setblocking(False)
            task = self.loop.create_task(self._connect(conn))
            self.pending.add(task)

    def _make_room(self) -> None:
        """Close the longest-idle keep-alive connection, if any (it counts until it is gone)."""
        idle = [p for p in self.state.connections if p.is_idle() and not p.fresh and not p.closed]
        if idle:
            min(idle, key=lambda p: p.idle_since).close()

    async def _connect(self, conn: socket.socket) -> None:
        try:
            if self.context is not None:
                await self.loop.connect_accepted_socket(
                    self.factory, conn, ssl=self.context, ssl_handshake_timeout=self.handshake_timeout
                )
            else:
                await self.loop.connect_accepted_socket(self.factory, conn)
        except (OSError, asyncio.TimeoutError) as exc:  # a failed handshake: the client's problem
            logger.debug("Connection failed before it was served: %r", exc)
            conn.close()
        finally:
            self.pending.discard(asyncio.current_task())  # type: ignore[arg-type,unused-ignore]
            self.resume()

    def resume(self) -> None:
        if not self.reading and not self.closed and self.count() < self.limit:
            self.start()
