"""Test harness: a real asgiserve Server on a real loopback socket, in a background thread.

running_server() binds 127.0.0.1:0 (or a unix socket), waits for the server's readiness
event (never a sleep), and on exit shuts the server down gracefully, bounded in time.
RawClient talks raw bytes over a socket with deadlines, for the cases httpx cannot express.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from asgiserve.config import Config
from asgiserve.server import Server

STOP_TIMEOUT = 15.0


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        out = []
        for r in self.records:
            out.append(r.getMessage())
            if r.exc_info and r.exc_info[1] is not None:
                out.append(repr(r.exc_info[1]))
        return "\n".join(out)


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with "ok" (Content-Length 2) without reading its body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class RunningServer:
    server: Server
    config: Config
    host: str
    port: int
    uds: Optional[str]
    logs: LogCapture
    thread: threading.Thread
    error: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def raw(self, timeout: float = 5.0) -> "RawClient":
        if self.uds:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.uds)
            return RawClient(sock)
        return RawClient(socket.create_connection((self.host, self.port), timeout=timeout))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.server.request_shutdown()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("server did not stop in time")


@contextlib.contextmanager
def running_server(app: Any, **options: Any) -> Iterator[RunningServer]:
    """Run ``app`` on a real socket until the block exits. Options are Config fields."""
    if "uds" not in options and "bind" not in options and "fd" not in options:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
    options.setdefault("lifespan", "auto")
    options.setdefault("log_level", "debug")
    config = Config(app=app, **options)
    capture = LogCapture()
    loggers = [logging.getLogger("asgiserve")]  # asgiserve.error / asgiserve.access propagate here
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    server = Server(config)
    ready = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        async def main() -> None:
            task = asyncio.ensure_future(server.serve())
            waiter = asyncio.ensure_future(server.started.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if server.started.is_set():
                ready.set()
            await task  # a startup failure raises here and is recorded before `ready` is set

        try:
            from asgiserve.loop import new_event_loop

            loop = new_event_loop(config.loop)
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="asgiserve-test", daemon=True)
    thread.start()
    if not ready.wait(STOP_TIMEOUT):
        raise AssertionError("server did not start in time")
    if errors:
        raise errors[0]
    host, port = "127.0.0.1", 0
    for sock in server.sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = sock.getsockname()[:2]
            break
    running = RunningServer(server, config, host, port, options.get("uds"), capture, thread, errors)
    try:
        yield running
    finally:
        try:
            if thread.is_alive():
                running.stop()
        finally:
            for lg in loggers:
                lg.removeHandler(capture)


class RawClient:
    """A blocking socket client with deadlines that reads whole HTTP/1.x responses."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_until_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def is_closed(self) -> bool:
        """True when the server has closed the connection (EOF or reset) and nothing else is pending."""
        try:
            return not self._fill()
        except ConnectionResetError:
            return True

    def read_head(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Read one response head: (status, headers with lower-cased names, raw head bytes)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"connection closed before a full response head: {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        return status, headers, head + b"\r\n\r\n"

    def read_response(self, method: bytes = b"GET") -> "RawResponse":
        """Read one final response (skipping 1xx interim ones), framed as the server framed it."""
        while True:
            status, headers, head = self.read_head()
            if status >= 200 or status == 101:
                break
        hdrs = dict(headers)
        if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif b"chunked" in hdrs.get(b"transfer-encoding", b"").lower():
            body = self._read_chunked()
        elif b"content-length" in hdrs:
            body = self._read_exact(int(hdrs[b"content-length"]))
        else:
            body = self.read_until_close()
        return RawResponse(status, headers, body, head)

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed after {len(self.buffer)} of {n} body bytes")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("connection closed inside chunked body")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():
                    pass
                return body
            body += self._read_exact(size)
            assert self._read_exact(2) == b"\r\n"


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    head: bytes

    def header(self, name: bytes) -> Optional[bytes]:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_list(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]
