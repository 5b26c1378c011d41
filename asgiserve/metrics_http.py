"""The --metrics listener: a socket of its own, apart from the app's, answering three paths.

  /metrics       Prometheus text (prometheus_client renders it, from metrics.families)
  /metrics.json  the same figures per worker and combined, for the live page (and scripts)
  /              the live page (metrics_view.py)

One request per connection (``Connection: close``), GET or HEAD, a head of at most 8 KiB, done
within CLIENT_TIMEOUT. A single process serves it on its own event loop (``LiveFigures``); under
the supervisor, which has no event loop and must not start threads (it forks), the listener is
one more file descriptor in its ``poll()`` loop (``PollListener``), non-blocking throughout, so
a slow or stuck scraper never holds up signals or worker management.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import select
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import BindError, ConfigError
from .metrics import Gatherer, ServerMetrics, View, probe, publish, single_view

if TYPE_CHECKING:
    from .server import Server

logger = logging.getLogger("asgiserve.error")

MAX_HEAD = 8192
CLIENT_TIMEOUT = 10.0
EXTRA = "metrics"  # pyproject's optional extra holding prometheus_client


def address_problems(text: str) -> list[str]:
    try:
        parse_address(text)
    except ValueError as exc:
        return [f"--metrics {text!r}: {exc}"]
    return []


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT (port 0 picks a free one)."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("expected HOST:PORT or [IPv6]:PORT")
        port = rest[1:]
    else:
        host, sep, port = value.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("expected HOST:PORT or [IPv6]:PORT")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT with a port between 0 and 65535")
    return host, int(port)


def require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(f"--metrics needs prometheus_client: pip install 'asgiserve[{EXTRA}]'") from None


def bind(text: str) -> socket.socket:
    host, port = parse_address(text)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=64)
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BindError(f"--metrics {text}: cannot listen: {reason}") from None
    return sock


def describe(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"Metrics on http://{where}/metrics, live page on http://{where}/"


def respond(head: bytes, view: Callable[[], View]) -> bytes:
    """The whole HTTP response to one request head."""
    from .metrics_render import prometheus_text
    from .metrics_view import PAGE

    line = head.split(b"\r\n", 1)[0].split()
    if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
        return _response(400, "text/plain; charset=utf-8", b"Bad Request\n")
    method, path = line[0], line[1].split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return _response(405, "text/plain; charset=utf-8", b"Method Not Allowed\n", b"allow: GET, HEAD\r\n")
    if path == b"/metrics":
        body, ctype = prometheus_text(view())
    elif path == b"/metrics.json":
        body, ctype = view().as_json(), "application/json"
    elif path == b"/":
        body, ctype = PAGE, "text/html; charset=utf-8"
    else:
        return _response(404, "text/plain; charset=utf-8", b"Not Found: try /metrics, /metrics.json or /\n")
    response = _response(200, ctype, body)
    return response[: len(response) - len(body)] if method == b"HEAD" else response


def _response(status: int, ctype: str, body: bytes, extra: bytes = b"") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              500: "Internal Server Error"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
        "cache-control: no-store\r\nconnection: close\r\n"
    ).encode("latin-1") + extra + b"\r\n" + body


# -- a single process: on its own event loop ---------------------------------------------------
class _Scrape(asyncio.Protocol):
    def __init__(self, view: Callable[[], View], loop: asyncio.AbstractEventLoop) -> None:
        self.view = view
        self.loop = loop
        self.buffer: Optional[bytes] = b""
        self.transport: Any = None
        self.timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.timer = self.loop.call_later(CLIENT_TIMEOUT, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.buffer is None:
            return
        self.buffer += data
        if b"\r\n\r\n" in self.buffer or len(self.buffer) > MAX_HEAD:
            head, self.buffer = self.buffer, None
            try:
                response = respond(head, self.view)
            except Exception:
                logger.exception("Error while rendering the metrics")
                response = _response(500, "text/plain; charset=utf-8", b"Internal Server Error\n")
            self.transport.write(response)
            self.transport.close()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.timer is not None:
            self.timer.cancel()


class LiveFigures:
    """--metrics in a serving process: the lag probe, and the listener (unless a supervisor gathers)."""

    def __init__(self, server: "Server", metrics: ServerMetrics) -> None:
        self.server = server
        self.metrics = metrics
        self.listener: Optional[asyncio.AbstractServer] = None
        self.sockets: list[socket.socket] = []
        self.task: Optional["asyncio.Task[None]"] = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sink = self.server.metrics_sink
        self.task = loop.create_task(probe(self.metrics, sink))
        if sink is None:
            require_prometheus()
            sock = bind(self.server.config.metrics or "")
            self.sockets = [sock]
            self.listener = await loop.create_server(lambda: _Scrape(self.view, loop), sock=sock)
            logger.info("%s", describe(sock))

    def view(self) -> View:
        return single_view(self.metrics)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.listener is not None:
            self.listener.close()
        sink = self.server.metrics_sink
        if sink is not None:
            publish(self.metrics, sink)  # the final figures, so the supervisor's totals miss nothing


# -- the supervisor: one more fd in its poll() loop ------------------------------------------------
class PollListener:
    def __init__(self, address: str, poller: Any, view: Callable[[], View]) -> None:
        require_prometheus()
        self.sock = bind(address)
        self.sock.setblocking(False)
        self.poller = poller
        self.view = view
        self.clients: dict[int, list[Any]] = {}  # fd -> [socket, bytes in or out, deadline, writing]
        poller.register(self.sock.fileno(), select.POLLIN)
        logger.info("%s", describe(self.sock))

    def fds(self) -> list[int]:
        return [self.sock.fileno(), *self.clients]

    def owns(self, fd: int) -> bool:
        return fd == self.sock.fileno() or fd in self.clients

    def handle(self, fd: int, events: int) -> None:
        if fd == self.sock.fileno():
            self._accept()
            return
        client = self.clients[fd]
        sock = client[0]
        try:
            if client[3]:
                sent = sock.send(client[1])
                client[1] = client[1][sent:]
                if not client[1]:
                    self._drop(fd)
                return
            data = sock.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        if not data:
            self._drop(fd)
            return
        client[1] += data
        if b"\r\n\r\n" in client[1] or len(client[1]) > MAX_HEAD:
            try:
                client[1] = respond(client[1], self.view)
            except Exception:
                logger.exception("Error while rendering the metrics")
                self._drop(fd)
                return
            client[3] = True
            self.poller.modify(fd, select.POLLOUT)
            self.handle(fd, select.POLLOUT)

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("Metrics listener: cannot accept: %s", exc.strerror)
                return
            sock.setblocking(False)
            self.clients[sock.fileno()] = [sock, b"", time.monotonic() + CLIENT_TIMEOUT, False]
            self.poller.register(sock.fileno(), select.POLLIN)

    def _drop(self, fd: int) -> None:
        client = self.clients.pop(fd, None)
        if client is not None:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
            client[0].close()

    def sweep(self) -> None:
        """Close connections past their deadline (called from the supervisor's loop, at least once a second)."""
        now = time.monotonic()
        for fd in [fd for fd, c in self.clients.items() if c[2] <= now]:
            self._drop(fd)

    def close(self) -> None:
        for fd in list(self.clients):
            self._drop(fd)
        try:
            self.poller.unregister(self.sock.fileno())
        except KeyError:
            pass
        self.sock.close()


class SupervisorFigures(PollListener):
    """--metrics under the supervisor: the workers' snapshots (``S`` lines), combined on each scrape."""

    def __init__(self, address: str, poller: Any, supervisor: Any) -> None:
        self.gatherer = Gatherer()
        self.supervisor = supervisor
        super().__init__(address, poller, self.view)

    def view(self) -> View:
        sup = self.supervisor
        serving = sum(1 for w in sup.workers.values() if w.ready and not w.stopping)
        return self.gatherer.view(serving, sup.restarts)
