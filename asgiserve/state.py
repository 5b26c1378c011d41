"""What every connection of one Server shares (``ServerState``) and how a request's task starts.

Apart from server.py so that it can be compiled with mypyc with the per-request modules that
read it on every request (docs/mypyc.md); server.py re-exports ``ServerState``.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional

from .config import Config
from .http.response import default_headers
from .tls import ServerTLS

if TYPE_CHECKING:
    from .http.protocol import HttpProtocol
    from .server import Server

logger = logging.getLogger("asgiserve.error")

TASK_NAME = "asgiserve-request"


if sys.version_info >= (3, 11):

    def new_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None],
                 context: contextvars.Context) -> "asyncio.Task[None]":
        """A task running ``coro`` in ``context``, through the loop's task factory if one is set."""
        if loop.get_task_factory() is None:
            # Named here: asyncio before 3.12 otherwise formats a unique "Task-N" for each task.
            return asyncio.Task(coro, loop=loop, context=context, name=TASK_NAME)
        from .server import genuine_coroutine  # an app's task factory is rare: imported when one is set

        return loop.create_task(genuine_coroutine(coro), context=context)

else:

    def new_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None],
                 context: contextvars.Context) -> "asyncio.Task[None]":
        # 3.10 has no context argument; a task copies the context it is created in.
        return context.run(_task_in_current_context, loop, coro)

    def _task_in_current_context(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        if loop.get_task_factory() is None:
            return asyncio.Task(coro, loop=loop, name=TASK_NAME)
        from .server import genuine_coroutine

        return loop.create_task(genuine_coroutine(coro))


class ServerState:
    """What every connection of one Server shares. Plain attributes: read on the hot path."""

    def __init__(self, server: "Server", config: Config, app: Any, loop: asyncio.AbstractEventLoop,
                 interface: str = "asgi3", tls: Optional[ServerTLS] = None) -> None:
        from . import ws
        from .http2 import H2Settings
        from .http.parser import parser_factory, resolve_http
        from .logs import AccessLogger
        from .proxy import ProxyHeaders

        self.server = server
        self.config = config
        self.app = app
        self.loop = loop
        self.http = resolve_http(config.http)
        self.interface = interface
        self.websockets = ws.WebSocketSettings(config) if ws.enabled(config, interface) else None
        self.http2: Optional[H2Settings] = H2Settings(config) if config.http2 else None
        self.tls = tls
        self.websocket_warned = False
        self.new_parser: Callable[[], Any] = parser_factory(self.http, config, self.websockets is not None)
        self.root_path = config.root_path
        self.root_prefix = config.root_path + "/"  # a path under root_path, on a segment boundary
        self.root_raw = config.root_path.encode("utf-8")
        self.proxy: Optional[ProxyHeaders] = ProxyHeaders(config) if config.proxy_headers else None
        self.access_logger = AccessLogger(config)
        self.access_log_enabled = self.access_logger.enabled
        self.metrics: Any = None  # --metrics: a metrics.ServerMetrics, fed where the access line is made
        if config.metrics:
            from .metrics import ServerMetrics

            self.metrics = self.access_logger.metrics = ServerMetrics(self)
            self.access_log_enabled = True  # durations are measured, and every response reaches the logger
        self.limit_concurrency = config.limit_concurrency
        self.body_limit = config.limit_request_body or 2**64  # compared per body chunk: no None test
        self.limit_max_requests = config.limit_max_requests
        self.extra_headers = config.default_headers
        self.default_headers = b""
        self.refresh_headers()
        self.lifespan_state: dict[str, Any] = {}
        self.connections: set[HttpProtocol] = set()
        self.acceptors: list[Any] = []  # accept.Acceptor per socket, with --limit-connections
        self.accepting = True  # False while an acceptor is paused at the connection limit
        self.closing = 0  # connections the server closed that are not gone yet (lingering)
        self.tasks: set[asyncio.Task[None]] = set()
        self.active_requests = 0
        self.total_requests = 0
        self.shutting_down = False
        self.all_done: Optional[asyncio.Event] = None
        self.waiting_event: Optional[asyncio.Event] = None
        # Each request runs in a fresh copy of this context, never of another request's.
        self.context = contextvars.copy_context()

    def refresh_headers(self) -> None:
        config = self.config
        self.default_headers = default_headers(config.server_header, config.date_header, self.extra_headers)
        self._partial_defaults: dict[frozenset[bytes], bytes] = {}

    def defaults_without(self, head: Any) -> bytes:
        """Default headers minus Date/Server when the app set its own (rare; cached per second)."""
        own = head.own_defaults
        cached = self._partial_defaults.get(own)
        if cached is None:
            config = self.config
            cached = default_headers(
                config.server_header and b"server" not in own,
                config.date_header and b"date" not in own,
                self.extra_headers,
            )
            self._partial_defaults[own] = cached
        return cached

    def accepting_paused(self) -> None:
        if self.accepting:
            self.accepting = False
            logger.warning("Connection limit (%d) reached: not accepting until a connection closes.",
                           self.config.limit_connections)

    def connection_gone(self) -> None:
        """A connection closed while accepting was paused at the limit."""
        for acceptor in self.acceptors:
            acceptor.resume()
        self.accepting = all(a.reading or a.closed for a in self.acceptors)

    def websocket_refused(self) -> None:
        """A WebSocket request is served as plain HTTP: say why, once."""
        if not self.websocket_warned:
            self.websocket_warned = True
            why = "WSGI apps cannot take WebSockets" if self.interface == "wsgi" else "--ws none is set"
            logger.warning("WebSocket upgrade requests are served as plain HTTP: %s.", why)

    def begin_request(self, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        """Count a request and run its coroutine as a task in a fresh copy of the context.

        The coroutine calls ``end_request`` as it ends; not a done-callback, which would cost
        an extra loop callback per request.
        """
        self.active_requests += 1
        self.total_requests += 1
        if self.limit_max_requests is not None and self.total_requests >= self.limit_max_requests:
            if not self.shutting_down:
                logger.info("Maximum request limit of %d reached; shutting down.", self.limit_max_requests)
                self.server.request_shutdown()
        task = new_task(self.loop, coro, self.context.copy())
        self.tasks.add(task)
        return task

    def end_request(self, task: "Optional[asyncio.Task[None]]") -> None:
        if task is not None:
            self.tasks.discard(task)
        self.active_requests -= 1
        if self.all_done is not None and not self.tasks_pending():
            self.all_done.set()

    def live_tasks(self) -> "list[asyncio.Task[None]]":
        # A task cancelled before its first step never ran its coroutine, so never said done.
        self.tasks = {t for t in self.tasks if not t.done()}
        return list(self.tasks)

    def tasks_pending(self) -> bool:
        return self.active_requests > 0

    def close_when_idle(self, proto: HttpProtocol, spare_since: Optional[float] = None) -> None:
        """Close ``proto`` if no request is in progress on it, unless it may have one on its
        way: just accepted, or (with ``spare_since``) answered at or after that time."""
        if proto.is_idle() and not proto.fresh and (spare_since is None or proto.idle_since < spare_since):
            proto.close()

    def waiting_changed(self) -> None:
        """During shutdown: a connection got a request or went away (see Server._await_requests)."""
        if self.waiting_event is not None:
            self.waiting_event.set()

    def waiting_connections(self, since: float) -> list[HttpProtocol]:
        """Idle connections that may have a request on its way: just accepted, or answered at or after ``since``."""
        return [p for p in self.connections if not p.closed and p.is_idle() and (p.fresh or p.idle_since >= since)]
