"""systemd integration without libsystemd: sd_notify datagrams and socket activation.

sd_notify: the service manager passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for
an abstract socket); the service writes newline-separated ``KEY=VALUE`` assignments to it as
one datagram. Nothing else is needed, so a ``Type=notify`` unit works with no extra package.
Sending is best effort: a missing or dead socket must never take the server down.

Socket activation: systemd passes listening sockets as fds 3, 4, ... and says how many in
``LISTEN_FDS``, guarded by ``LISTEN_PID`` (the fds are only for the process whose PID it is,
not for a child that inherited the environment). As ``sd_listen_fds(1)`` does, the variables
are removed once read, and the fds are marked close-on-exec so subprocesses don't inherit them.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping, MutableMapping, Optional

logger = logging.getLogger("asgiserve.error")

LISTEN_FDS_START = 3
_ENV_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def notify_address(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """NOTIFY_SOCKET as an AF_UNIX address ('@name' -> '\\0name'), or None when not under systemd."""
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None  # vsock and other kinds: not supported, ignore quietly


def notify(*assignments: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Send ``KEY=VALUE`` assignments as one datagram; True when it was delivered."""
    address = notify_address(environ)
    if address is None or not assignments:
        return False
    payload = "\n".join(assignments).encode("utf-8", "replace")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(1.0)  # a full receive queue must not hang the supervisor
        sock.sendto(payload, address)
        return True
    except OSError as exc:
        logger.debug("sd_notify(%r) failed: %s", assignments, exc)
        return False
    finally:
        sock.close()


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd expects in MONOTONIC_USEC (RELOADING=1)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def ready(status: str = "") -> bool:
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def reloading(status: str = "Reloading") -> bool:
    # systemd >= 253 requires MONOTONIC_USEC with RELOADING=1 for Type=notify-reload.
    return notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", f"STATUS={status}")


def stopping(status: str = "Stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={status}")


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def watchdog_interval(environ: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when no watchdog is set."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2e6


def listen_fds(environ: Optional[MutableMapping[str, str]] = None, unset: bool = True) -> list[int]:
    """File descriptors passed to this process by socket activation (empty when none).

    Only honoured when LISTEN_PID is our PID. With ``unset`` the variables are removed so
    that worker processes and the app's own subprocesses do not read them again.
    """
    env = os.environ if environ is None else environ
    try:
        pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    finally:
        if unset:
            for name in _ENV_VARS:
                env.pop(name, None)
    if pid != os.getpid() or count <= 0:
        return []
    fds = list(range(LISTEN_FDS_START, LISTEN_FDS_START + count))
    for fd in fds:
        try:
            os.set_inheritable(fd, False)
        except OSError:  # not open: let the socket wrapper report it with its fd number
            pass
    return fds


def forget_notify_socket() -> None:
    """Worker processes must never speak for the service: only the supervisor notifies."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", *_ENV_VARS):
        os.environ.pop(name, None)


async def notify_when_serving(server: "object") -> None:
    """For single-process runs: READY=1 once ``server.started`` is set (a Server instance).

    ``server.run()`` can start this as a task next to ``server.serve()`` and call
    ``stopping()`` from its signal handler; in worker processes it is a no-op, because
    workers drop NOTIFY_SOCKET from their environment.
    """
    await server.started.wait()  # type: ignore[attr-defined]
    sockets = getattr(server, "sockets", [])
    from .bind import describe

    ready("Serving on " + ", ".join(describe(s) for s in sockets))
