"""One worker process, forked by the supervisor: an ordinary Server on the inherited sockets.

The worker talks to the supervisor over a pipe, one short line per message:
  ``H``   heartbeat, written by a task on the worker's own event loop, so a blocked loop
          (a ``time.sleep`` in an async view, a deadlock) stops the heartbeats and the
          supervisor's ``--timeout`` catches it. A thread could keep beating while the loop
          is stuck, which is the failure this must detect.
  ``R``   the server is accepting connections (lifespan startup done).
  ``M``   ``--max-requests`` reached: the supervisor starts a replacement and only stops this
          worker (gracefully) once the replacement serves, so no connection finds nobody.
  ``E{json}`` the worker could not boot: message (and traceback) for the supervisor to report.
  ``S{json}`` --metrics: this worker's figures, twice a second and once more as it stops.
A write that fails with EPIPE means the supervisor is gone: the worker drains and exits.

Signals: the supervisor blocks its signals around fork(), so the child starts with them
blocked; they stay blocked while the app is imported (a TERM sent then is delivered, not
lost, once the loop's handlers exist: gunicorn#1910) and are unblocked after installing
TERM/INT = graceful, QUIT = immediate, USR1 = reopen log files; HUP/TTIN/TTOU are the
supervisor's business and are ignored here. SIGABRT (sent on --timeout) is handled by a plain
Python handler, not through the loop (which is the thing that is stuck): it dumps every
thread's stack to stderr and exits; if even that cannot run, the supervisor's SIGKILL follows.
"""
from __future__ import annotations

import asyncio
import errno
import faulthandler
import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Optional

from .. import hooks
from ..config import Config
from ..errors import EXIT_STARTUP, AsgiserveError
from ..logs import reopen_log_files as reopen_log_files  # SIGUSR1, here and in the supervisor

logger = logging.getLogger("asgiserve.error")

# Signals the supervisor handles (and blocks around fork).
SUPERVISOR_SIGNALS = (
    signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGTERM,
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGCHLD,
)
EXIT_CRASH = 1


def heartbeat_interval(timeout: float) -> float:
    """How often a worker checks in: several beats per --timeout, at most once a second."""
    if timeout <= 0:
        return 1.0
    return min(1.0, max(0.05, timeout / 5))


class Channel:
    """The worker's end of its pipe to the supervisor (non-blocking, best effort)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False
        os.set_blocking(fd, False)

    def send(self, message: bytes) -> bool:
        if self.broken:
            return False
        try:
            os.write(self.fd, message + b"\n")
            return True
        except BlockingIOError:  # supervisor busy: a skipped heartbeat is harmless
            return True
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF):
                self.broken = True
                return False
            raise

    def boot_error(self, message: str, traceback: str = "") -> None:
        payload = json.dumps({"message": message, "traceback": traceback})
        self.send(b"E" + payload.encode("utf-8"))


def set_title(role: str, config: Config) -> None:
    from ..proctitle import set_title as _set_title

    _set_title(role, config)


def import_serving_modules(config: Config) -> None:
    """Import everything serving imports lazily, while the files are still readable: after
    --user/--group the package may not be (a checkout in a 0700 directory, root's home)."""
    from ..http.parser import resolve_http

    for name in ("asgiserve.app_loader", "asgiserve.loop", "asgiserve.server", "asgiserve.logs", "asgiserve.proxy",
                 "asgiserve.wsgi", "asgiserve.http.parse_" + resolve_http(config.http), "asgiserve.ws.connection",
                 "asgiserve.ws.deflate", "asgiserve.http2", "asgiserve.tls", "asgiserve.accept"):
        importlib.import_module(name)
    if config.http2:  # h2 is an extra: without it --http2 already failed with one line
        for name in ("asgiserve.http2.connection", "asgiserve.http2.stream"):
            importlib.import_module(name)
    if config.loop != "asyncio":
        try:
            import uvloop  # noqa: F401
        except ImportError:  # new_event_loop says so (uvloop) or falls back (auto)
            pass


def drop_privileges(uid: Optional[int], gid: Optional[int]) -> None:
    """Switch to --user/--group (resolved by the supervisor); a no-op when not asked."""
    if uid is None and gid is None:
        return
    import pwd

    if gid is None:
        gid = pwd.getpwuid(uid).pw_gid  # type: ignore[arg-type]
    if uid is not None and uid != os.getuid():
        os.initgroups(pwd.getpwuid(uid).pw_name, gid)
    elif os.getuid() == 0:
        os.setgroups([gid])
    if gid != os.getgid():
        os.setgid(gid)
    if uid is not None and uid != os.getuid():
        os.setuid(uid)


def _on_abort(signum: int, frame: Any) -> None:
    """--timeout: show where the loop was stuck, then go (the supervisor SIGKILLs if this can't run)."""
    hooks.worker_abort()
    logger.error("Worker %d aborted by the supervisor (--timeout); stacks of all threads follow.", os.getpid())
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    flush_std_streams()
    os._exit(EXIT_CRASH)


def run(
    config: Config,
    sockets: list[socket.socket],
    loaded: Any,
    channel_fd: int,
    max_requests: int,
    uid: Optional[int] = None,
    gid: Optional[int] = None,
) -> int:
    """Serve until told to stop; returns the process exit code (0, 1, or 3 = failed to boot)."""
    from .. import systemd

    parent = os.getppid()
    systemd.forget_notify_socket()
    channel = Channel(channel_fd)
    for sig in SUPERVISOR_SIGNALS:  # still blocked: nothing can arrive until we unblock
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGABRT, _on_abort)
    set_title("worker", config)
    from .. import tls

    try:
        server_tls = tls.load(config)  # key files are often readable by root only
    except AsgiserveError as exc:
        channel.boot_error(str(exc))
        return EXIT_STARTUP
    try:
        if uid is not None or gid is not None:
            import_serving_modules(config)
        drop_privileges(uid, gid)
    except OSError as exc:
        channel.boot_error(f"could not switch to --user/--group: {exc.strerror or exc}")
        return EXIT_STARTUP
    if loaded is None:
        from ..app_loader import AppImportError, load_app

        importlib.invalidate_caches()  # a reload must see files deployed since the supervisor started
        try:
            loaded = load_app(config)
        except AppImportError as exc:
            channel.boot_error(str(exc), exc.format_traceback())
            return EXIT_STARTUP
        except AsgiserveError as exc:
            channel.boot_error(str(exc))
            return EXIT_STARTUP
        logger.info("Serving %s", loaded.description)
    hooks.worker_loaded(loaded.app)  # post_worker_init
    return _serve(config, sockets, loaded, channel, max_requests, parent, server_tls)


def _serve(config: Config, sockets: list[socket.socket], loaded: Any, channel: Channel,
           max_requests: int, parent: int, server_tls: Any = None) -> int:
    from ..loop import new_event_loop
    from ..server import Server

    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    server = Server(config, app=hooks.wrap_app(loaded.app, loaded.interface))  # pre/post_request, if set
    server.interface = loaded.interface
    server.tls = server_tls
    if config.metrics:  # the supervisor listens and combines the workers' figures (metrics.py)
        server.metrics_sink = lambda data: channel.send(b"S" + data)
    interrupts = 0

    def on_stop(sig: signal.Signals) -> None:
        nonlocal interrupts
        hooks.worker_stopping(sig != signal.SIGTERM)  # worker_int on INT and QUIT, as gunicorn
        if sig == signal.SIGQUIT:
            server.request_shutdown(force=True)
            return
        interrupts += sig == signal.SIGINT
        server.request_shutdown(force=interrupts > 1)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(sig, on_stop, sig)
    loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)

    ready = False
    monitor = loop.create_task(_monitor(server, channel, config, max_requests, parent))

    async def serve() -> None:
        nonlocal ready
        announce = asyncio.ensure_future(_announce(server, channel))
        try:
            await server.serve(sockets)
        finally:
            ready = announce.done() and not announce.cancelled()
            announce.cancel()

    code = 0
    try:
        loop.run_until_complete(serve())
    except AsgiserveError as exc:  # lifespan startup failed or timed out
        if ready:
            logger.error("Worker stopped: %s", exc)
            code = EXIT_CRASH
        else:
            channel.boot_error(str(exc))
            code = EXIT_STARTUP
    except Exception:
        logger.exception("Worker crashed")
        code = EXIT_CRASH
    finally:
        monitor.cancel()
        try:
            loop.run_until_complete(asyncio.gather(monitor, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    return code


async def _announce(server: Any, channel: Channel) -> None:
    await server.started.wait()
    channel.send(b"R")


async def _monitor(server: Any, channel: Channel, config: Config, max_requests: int, parent: int) -> None:
    """Heartbeats from the loop itself, the --max-requests check, and orphan detection."""
    beat = heartbeat_interval(config.timeout)
    tick = min(beat, 0.05) if max_requests else beat
    last_beat = 0.0
    retiring = False
    while True:
        now = time.monotonic()
        if now - last_beat >= beat:
            last_beat = now
            if not channel.send(b"H") or os.getppid() != parent:
                logger.warning("Supervisor %d is gone; worker shutting down.", parent)
                server.request_shutdown()
                return
        if max_requests and not retiring and server.total_requests >= max_requests:
            retiring = True
            logger.info("Worker reached --max-requests (%d served); asking for a replacement.",
                        server.total_requests)
            channel.send(b"M")
        await asyncio.sleep(tick)


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing left to flush
            pass
