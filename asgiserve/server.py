"""One serving process: lifespan, listening sockets, connections, graceful shutdown.

``Server.serve()`` is the same code path for a single-process run and for each worker a
supervisor forks, so there is one shutdown sequence to get right:
stop accepting -> let the loop deliver bytes already received -> close idle connections ->
wait (bounded) for in-flight requests, whose responses say ``Connection: close`` -> tell what
still runs that the client is gone -> lifespan shutdown.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import types
from typing import Any, Callable, Coroutine, Optional

from .asgi.lifespan import Lifespan
from .config import Config
from .http.protocol import HttpProtocol
from .state import ServerState as ServerState  # compiled with mypyc when built so (docs/mypyc.md)
from .tls import ServerTLS

logger = logging.getLogger("asgiserve.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# At shutdown, a connection accepted or answered within the last GRACE seconds gets up to GRACE
# seconds to send its (next) request, which is then served with Connection: close.
GRACE = 1.0
# Compiled (mypyc) coroutines by their type's name, and the name of the method they run.
COMPILED_COROUTINES = {"run_asgi_RequestCycle_gen": "RequestCycle.run_asgi"}


def genuine_coroutine(coro: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """``coro``, or, when it comes from code compiled with mypyc (docs/mypyc.md), a Python
    coroutine awaiting it and named like it: mypyc's coroutine objects have no ``__qualname__``,
    ``cr_frame`` or ``cr_code``, which an app's task factory (tracing, monitoring) may read.
    Only for task factories: asyncio's own Task takes either."""
    if type(coro) is types.CoroutineType:
        return coro
    wrapper = _awaiting(coro)
    name = COMPILED_COROUTINES.get(type(coro).__name__, type(coro).__qualname__)
    setattr(wrapper, "__qualname__", name)  # a Coroutine has none in the type stubs
    setattr(wrapper, "__name__", name.rpartition(".")[2])
    return wrapper


async def _awaiting(coro: Coroutine[Any, Any, None]) -> None:
    await coro


class Server:
    """Serve one ASGI app (``config.app`` unless ``app`` is given) until asked to stop."""

    def __init__(self, config: Config, app: Any = None) -> None:
        self.config = config
        self.app = app
        self.sockets: list[socket.socket] = []
        self.started = asyncio.Event()
        self.state: Optional[ServerState] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._force = False
        self._stop_requested = threading.Event()
        self.interface = "asgi3"
        self.tls: Optional[ServerTLS] = None  # loaded by serve() unless set before
        # --metrics under a supervisor: the worker sends its figures here instead of listening.
        self.metrics_sink: Optional[Callable[[bytes], Any]] = None

    @property
    def total_requests(self) -> int:
        return self.state.total_requests if self.state else 0

    def request_shutdown(self, force: bool = False) -> None:
        """Ask for a graceful stop (or a forced one). Safe from any thread and from signal handlers."""
        self._stop_requested.set()
        if force:
            self._force = True
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._on_stop_request()
        else:
            try:
                loop.call_soon_threadsafe(self._on_stop_request)
            except RuntimeError:  # loop closed meanwhile: nothing left to stop
                pass

    def _on_stop_request(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._force and self.state is not None:
            self._abort_all()

    async def serve(self, sockets: Optional[list[socket.socket]] = None) -> None:
        from . import bind, tls

        config = self.config
        loop = self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested.is_set():
            self._stop.set()
        if self.app is None:
            from .app_loader import load_app

            loaded = load_app(config)
            self.app, self.interface = loaded.app, loaded.interface
            logger.info("Serving %s", loaded.description)
        own_sockets = sockets is None
        if self.tls is None:
            self.tls = tls.load(config)  # in each process: a worker started by HUP reads new files
        self.sockets = bind.create_sockets(config) if sockets is None else list(sockets)
        state = self.state = ServerState(self, config, self.app, loop, self.interface, self.tls)
        servers: list[asyncio.AbstractServer] = []
        lifespan = Lifespan(self.app, config.lifespan, config.lifespan_startup_timeout, config.lifespan_shutdown_timeout)
        ticker: Optional[asyncio.Task[None]] = None
        live: Any = None  # metrics_http.LiveFigures, with --metrics
        try:
            await lifespan.startup()
            state.lifespan_state = lifespan.state
            factory = lambda: HttpProtocol(state)  # noqa: E731
            for sock in self.sockets:
                if config.limit_connections is not None:
                    from .accept import Acceptor

                    context = self.tls.context if self.tls is not None and sock.family != socket.AF_UNIX else None
                    acceptor = Acceptor(loop, sock, factory, state, config.limit_connections, context,
                                        config.ssl_handshake_timeout or config.timeout_request_header)
                    acceptor.start()
                    state.acceptors.append(acceptor)
                    servers.append(acceptor)  # type: ignore[arg-type]  # close() is all that is asked of it
                elif self.tls is not None and sock.family != socket.AF_UNIX:
                    servers.append(await loop.create_server(
                        factory, sock=sock, backlog=config.backlog, ssl=self.tls.context,
                        ssl_handshake_timeout=config.ssl_handshake_timeout or config.timeout_request_header,
                    ))
                else:
                    servers.append(await loop.create_server(factory, sock=sock, backlog=config.backlog))
            for sock in self.sockets:
                logger.info("Listening on %s", bind.describe(sock, self.tls is not None))
            logger.info("Using %s parser, %s loop.", state.http, type(loop).__module__.split(".")[0])
            ticker = loop.create_task(self._tick())
            if state.metrics is not None:
                from .metrics_http import LiveFigures

                live = LiveFigures(self, state.metrics)
                await live.start()
            self.started.set()
            await self._stop.wait()
            await self._shutdown(servers)
        finally:
            if ticker is not None:
                ticker.cancel()
            if live is not None:
                live.close()
            for srv in servers:
                srv.close()
            await lifespan.shutdown()
            if own_sockets:
                bind.cleanup(self.sockets)
        logger.info("Finished server process.")

    async def _tick(self) -> None:
        """Once a second (or faster for short keep-alive timeouts): Date header, idle sweep."""
        assert self.state is not None
        state = self.state
        config = self.config
        keep_alive = config.timeout_keep_alive
        head_timeout = config.timeout_request_header
        body_timeout = config.timeout_request_body
        shortest = min(keep_alive, head_timeout, body_timeout or head_timeout)
        interval = min(1.0, max(0.05, shortest / 4))
        while True:
            await asyncio.sleep(interval)
            state.refresh_headers()
            now = state.loop.time()
            deadline = now - keep_alive
            head_deadline = now - head_timeout
            for proto in list(state.connections):
                if proto.head_since or proto.receiving is not None:
                    proto.check_deadlines(now, head_deadline, body_timeout)
                elif proto.h2 is not None:
                    proto.h2.check_deadlines(now)
                # A head underway is not idleness: its own deadline applies (and answers 408).
                if not proto.head_since and proto.is_idle() and proto.idle_since <= deadline:
                    proto.close()

    async def _shutdown(self, servers: list[asyncio.AbstractServer]) -> None:
        state = self.state
        assert state is not None
        logger.info("Shutting down.")
        state.shutting_down = True
        for srv in servers:
            srv.close()
        # Bytes already received on accepted connections deserve an answer: let the loop
        # run a few times so data_received fires before idle connections are closed.
        for _ in range(3):
            await asyncio.sleep(0)
        for proto in list(state.connections):
            if proto.ws is not None:
                proto.ws.going_away()  # close 1012; their apps are told now and wind down
            elif proto.h2 is not None:
                proto.h2.going_away()  # GOAWAY: no new streams; the accepted ones are answered
        started = state.loop.time()
        recent = started - GRACE
        for proto in list(state.connections):
            state.close_when_idle(proto, spare_since=None if self._force else recent)
        if not self._force:
            await self._await_requests(state, recent)
            deadline = state.loop.time() + self.config.timeout_graceful_shutdown
            while True:
                await self._await_in_flight(state, deadline)
                # Responses whose head went out before the stop promised keep-alive: their
                # clients get the same grace for a next request (answered with Connection: close).
                if state.waiting_connections(started):
                    await self._await_requests(state, started)
                # A request may have arrived meanwhile (even as the last one ended): serve it too.
                if not state.tasks_pending() or state.loop.time() >= deadline:
                    break
            await self._await_websocket_closes(state, deadline)
        self._abort_all(cancel=self._force)
        pending = state.live_tasks()
        if pending:
            # Apps told "http.disconnect" get a moment to wind down before being cancelled.
            await asyncio.wait(pending, timeout=1.0)
            pending = state.live_tasks()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    async def _await_websocket_closes(self, state: ServerState, deadline: float) -> None:
        """WebSockets were sent close 1012 when the stop began: their clients get to answer it
        before the TCP close (RFC 6455 7.1.1), within the grace and WebSocket.CLOSE_TIMEOUT."""
        from .ws.connection import CLOSE_TIMEOUT

        end = min(deadline, state.loop.time() + CLOSE_TIMEOUT)
        await self._wait_while(state, lambda: any(p.ws is not None and not p.closed for p in state.connections), end)

    @staticmethod
    async def _wait_while(state: ServerState, pending: Callable[[], bool], end: float) -> None:
        """Wait until ``pending()`` is false or the loop time ``end``; re-checked whenever a
        connection signals ``waiting_changed``."""
        loop = state.loop
        state.waiting_event = asyncio.Event()
        while pending():
            remaining = end - loop.time()
            if remaining <= 0:
                return
            state.waiting_event.clear()
            try:
                await asyncio.wait_for(state.waiting_event.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _await_in_flight(self, state: ServerState, deadline: float) -> None:
        if not state.tasks_pending():
            return
        state.all_done = asyncio.Event()
        logger.info("Waiting for %d in-flight request(s) to finish.", state.active_requests)
        try:
            await asyncio.wait_for(state.all_done.wait(), max(0.0, deadline - state.loop.time()))
        except asyncio.TimeoutError:
            logger.warning(
                "Graceful shutdown timed out after %gs; cancelling %d request(s).",
                self.config.timeout_graceful_shutdown,
                state.active_requests,
            )

    async def _await_requests(self, state: ServerState, since: float) -> None:
        """Connections accepted just before shutdown usually have their first request in
        flight, and connections answered a moment ago their next one: closing them now would
        drop a request the client already sent (a reload under load would fail requests). Give
        them up to GRACE to send it; it is then served with ``Connection: close``. Connections
        idle for longer were closed above: clients of persistent connections must be ready for
        that (RFC 9112 9.3.1), and it is rare for them to be sending at that very moment."""
        end = state.loop.time() + min(GRACE, self.config.timeout_graceful_shutdown)
        await self._wait_while(state, lambda: bool(state.waiting_connections(since)), end)
        for proto in state.waiting_connections(since):
            proto.close()

    def _abort_all(self, cancel: bool = True) -> None:
        state = self.state
        assert state is not None
        for proto in list(state.connections):
            for cycle in list(proto.queue):
                cycle.disconnect()
            if proto.ws is not None:
                proto.ws.disconnect(1012 if not self._force else 1006, "")
            proto.close()
        if cancel:
            for task in state.live_tasks():
                task.cancel()


def run(config: Config, sockets: Optional[list[socket.socket]] = None) -> None:
    """Serve in this process until SIGINT/SIGTERM; a second SIGINT forces the exit.

    The single-process counterpart of workers.supervisor.run: it honours systemd socket
    activation and Type=notify (READY/STOPPING) and --pid, like the supervisor does.
    """
    from . import bind, systemd
    from .loop import new_event_loop
    from .workers.process import PidFile

    pidfile = PidFile(config.pid) if config.pid else None
    if pidfile is not None:
        pidfile.check()
    if sockets is None:
        fds = systemd.listen_fds()
        if fds:
            sockets = bind.sockets_from_fds(fds, backlog=config.backlog)
    server = Server(config)
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    interrupts = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal interrupts
        interrupts += sig == signal.SIGINT
        if interrupts <= 1:
            systemd.stopping()
        server.request_shutdown(force=interrupts > 1)

    def on_hup() -> None:
        logger.warning("SIGHUP ignored: reloading needs the supervisor (--supervise or --workers N).")

    async def main() -> None:
        notifier = asyncio.ensure_future(systemd.notify_when_serving(server))
        try:
            await server.serve(sockets)
        finally:
            notifier.cancel()

    handled = (*HANDLED_SIGNALS, signal.SIGHUP, signal.SIGUSR1)
    if threading.current_thread() is threading.main_thread():
        from .logs import reopen_log_files

        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)  # logrotate's postrotate, as with gunicorn
    try:
        if pidfile is not None:
            pidfile.write()
        loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            for sig in handled:
                try:
                    loop.remove_signal_handler(sig)
                except (ValueError, RuntimeError):  # loop already closing
                    pass
            asyncio.set_event_loop(None)
            loop.close()
            if pidfile is not None:
                pidfile.remove()
