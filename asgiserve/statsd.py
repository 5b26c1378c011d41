"""--statsd-host: gunicorn's statsd metrics, under gunicorn's names, so its dashboards keep working.

Per request (where the access log line is made, whether or not the line is written):
  ``<prefix>gunicorn.request.duration:<ms>|ms``, ``<prefix>gunicorn.requests:1|c|@1.0`` and
  ``<prefix>gunicorn.request.status.<N>:1|c|@1.0``.
From the supervisor (or the single process), when the number changes:
  ``<prefix>gunicorn.workers:<N>|g``.
Per error-log record at warning and above: ``<prefix>gunicorn.log.<warning|error|critical|exception>``.
These are gunicorn's own wire formats (gunicorn/instrument/statsd.py), prefix included: gunicorn
turns ``--statsd-prefix app`` into ``app.`` and keeps ``gunicorn.`` in every name. With
``--dogstatsd-tags`` each datagram ends with ``|#tags``.

One UDP datagram per metric, as gunicorn sends them. Sending never blocks the event loop: the
socket is non-blocking and connected once per process (the address is resolved then, not per
datagram); a datagram that cannot go out at once (full buffer, nobody listening, ICMP refused)
is dropped and counted in ``dropped``. Metrics are best effort, never a reason to slow a request.
Off (no --statsd-host), nothing here is imported on the request path.
"""
from __future__ import annotations

import logging
import os
import re
import socket
from typing import Any, Optional, Union

from .errors import ConfigError

DEFAULT_PORT = 8125
Address = Union[str, tuple[str, int]]


def parse_address(text: str) -> tuple[int, Address]:
    """gunicorn's forms: HOST:PORT, HOST (port 8125), [IPv6]:PORT, unix:PATH, unix://PATH."""
    value = text.strip()
    if value.startswith("unix:"):
        path = value[len("unix:"):]
        path = path[2:] if path.startswith("//") else path
        if not path or path.isdigit():  # gunicorn reads unix:8125 as host "unix", port 8125
            if path.isdigit():
                return socket.AF_INET, ("unix", int(path))
            raise ConfigError(f"--statsd-host {text!r}: no socket path after unix:")
        return socket.AF_UNIX, path
    host, port = value, str(DEFAULT_PORT)
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"--statsd-host {text!r} is not HOST:PORT or unix:PATH")
        port = rest[1:] or port
    elif ":" in value:
        host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--statsd-host {text!r} is not HOST:PORT or unix:PATH")
    return socket.AF_INET6 if ":" in host else socket.AF_INET, (host, int(port))


def normalise_prefix(prefix: str) -> str:
    """gunicorn's rule: a non-empty prefix ends with exactly one '.'."""
    return re.sub(r"^(.+[^.]+)\.*$", r"\g<1>.", prefix)


class Statsd:
    """A statsd client for one process; safe to create before fork (the socket is made lazily)."""

    def __init__(self, host: str, prefix: str = "", tags: str = "") -> None:
        self.family, self.address = parse_address(host)
        self.prefix = normalise_prefix(prefix)
        self.suffix = ("|#" + tags).encode("ascii") if tags else b""
        self.sock: Optional[socket.socket] = None
        self.pid = 0
        self.sent = 0
        self.dropped = 0
        self.last_workers: Optional[int] = None
        name = self._name
        self._requests = self._datagram(f"{name('gunicorn.requests')}:1|c|@1.0")
        self._duration = name("gunicorn.request.duration").encode("ascii") + b":%s|ms" + self.suffix
        self._status: dict[int, bytes] = {}

    def _name(self, metric: str) -> str:
        return self.prefix + metric

    def _datagram(self, text: str) -> bytes:
        return text.encode("ascii") + self.suffix

    def _socket(self) -> Optional[socket.socket]:
        if self.pid != os.getpid():  # first use, or a forked worker: a socket of its own
            self.pid = os.getpid()
            self.sock = self._connect()
        return self.sock

    def _connect(self) -> Optional[socket.socket]:
        sock = None
        try:
            if self.family == socket.AF_UNIX:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                target: Any = self.address
            else:
                assert isinstance(self.address, tuple)
                host, port = self.address
                # Resolved once, here (at startup), so no datagram ever waits for DNS.
                family, kind, proto, _, target = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
                sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
            sock.setblocking(False)
            sock.connect(target)
            return sock
        except OSError as exc:
            logging.getLogger("asgiserve.error").warning("statsd: cannot reach %s: %s", self.address, exc)
            if sock is not None:
                sock.close()
            return None

    def send(self, datagram: bytes) -> None:
        sock = self.sock if self.pid == os.getpid() else self._socket()
        if sock is None:
            self.dropped += 1
            return
        try:
            sock.send(datagram)
            self.sent += 1
        except OSError:  # would block, refused (nobody listening), too big: drop it, never wait
            self.dropped += 1

    # -- gunicorn's metrics ----------------------------------------------------------------
    def request(self, status: int, duration: float) -> None:
        self.send(self._duration % repr(round(duration * 1000.0, 3)).encode("ascii"))
        self.send(self._requests)
        datagram = self._status.get(status)
        if datagram is None:
            datagram = self._status[status] = self._datagram(f"{self._name('gunicorn.request.status.%d' % status)}"
                                                             ":1|c|@1.0")
        self.send(datagram)

    def gauge(self, metric: str, value: float) -> None:
        self.send(self._datagram(f"{self._name(metric)}:{value}|g"))

    def increment(self, metric: str, value: int = 1) -> None:
        self.send(self._datagram(f"{self._name(metric)}:{value}|c|@1.0"))

    def workers(self, count: int) -> None:
        """gunicorn.workers, sent when the number changes (as gunicorn's arbiter does)."""
        if count != self.last_workers:
            self.last_workers = count
            self.gauge("gunicorn.workers", count)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def from_config(config: Any) -> Optional[Statsd]:
    """A client when --statsd-host is set, else None (the per-request check is then one `is None`)."""
    if not config.statsd_host:
        return None
    return Statsd(config.statsd_host, config.statsd_prefix, config.dogstatsd_tags)


class LogCounter(logging.Handler):
    """gunicorn.log.* counters for the error log's warnings, errors and exceptions."""

    def __init__(self, client: Statsd) -> None:
        super().__init__(logging.WARNING)
        self.client = client

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.CRITICAL:
            kind = "critical"
        elif record.levelno >= logging.ERROR:
            kind = "exception" if record.exc_info else "error"
        else:
            kind = "warning"
        self.client.increment(f"gunicorn.log.{kind}")


def count_log_records(config: Any) -> None:
    """Attach a LogCounter to the error log (once; replacing an earlier one)."""
    client = from_config(config)
    base = logging.getLogger("asgiserve")
    for handler in list(base.handlers):
        if isinstance(handler, LogCounter):
            base.removeHandler(handler)
    if client is not None:
        counter = LogCounter(client)
        counter.addFilter(lambda record: record.name != "asgiserve.access")
        base.addHandler(counter)
