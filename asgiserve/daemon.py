"""-D/--daemon: detach from the terminal and run in the background, as gunicorn does.

The classic double fork (fork, ``setsid``, fork again: the daemon is in a session of its own
and, not being a session leader, can never acquire a controlling terminal), stdin/stdout/stderr
on /dev/null (``--error-logfile``/``--access-logfile`` are where the logs go), umask 022.

One thing more than gunicorn: the command does not return until the daemon serves (exit 0) or
failed to start (its exit code, and its one-line reason on stderr). gunicorn returns at once
and a bad app fails unseen. The daemon reports through the sd_notify protocol the server
already speaks: the waiting process binds a private abstract socket and hands it over as
NOTIFY_SOCKET; ``READY=1`` means serving, ``STATUS=Failed: ...`` with ``EXIT_STATUS=N`` (from
the CLI's error path) means it gave up, and a closed pipe means it died without a word.

Do not use it under systemd, Docker or Kubernetes: they track the process they started, and a
daemon that forks away from it looks like a service that exited (docs/deployment.md).
"""
from __future__ import annotations

import os
import secrets
import select
import socket
import sys
from typing import NoReturn, Optional

from .config import Config
from .errors import ConfigError

EXIT_DIED = 1


def daemonize(config: Config) -> None:
    """Returns in the daemon only; the calling process exits once the daemon serves or fails."""
    if os.environ.get("NOTIFY_SOCKET"):
        raise ConfigError("-D/--daemon under systemd (NOTIFY_SOCKET is set): systemd already runs the server in "
                          "the background; drop -D and use Type=notify")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    name = f"asgiserve-daemon-{os.getpid()}-{secrets.token_hex(8)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    listener.bind("\0" + name)
    alive_r, alive_w = os.pipe()  # EOF once every process holding the write end has exited
    pid = os.fork()
    if pid:
        os.close(alive_w)
        os.waitpid(pid, 0)  # the intermediate process exits as soon as it has forked
        _wait_for_daemon(listener, alive_r)
    listener.close()
    os.close(alive_r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.umask(0o22)
    os.environ["NOTIFY_SOCKET"] = "@" + name
    _stdio_to_devnull()
    # The write end stays open in the daemon until it exits; the worker processes it forks
    # keep a copy, which is harmless: the waiting process is gone once the daemon serves.
    os.set_inheritable(alive_w, False)


def _stdio_to_devnull() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _wait_for_daemon(listener: socket.socket, alive_r: int) -> NoReturn:
    """The waiting process: relay the daemon's outcome as this command's exit code."""
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    poller.register(alive_r, select.POLLIN)
    failure: Optional[str] = None
    code: Optional[int] = None
    daemon_pid: Optional[str] = None
    while True:
        for fd, _ in poller.poll():
            if fd == listener.fileno():
                fields = _parse(listener.recv(65536))
                daemon_pid = fields.get("MAINPID", daemon_pid)
                if fields.get("READY") == "1":
                    sys.stderr.write(f"asgiserve: serving in the background as PID {daemon_pid or '?'}.\n")
                    sys.stderr.flush()
                    os._exit(0)
                status = fields.get("STATUS", "")
                if status.startswith("Failed: "):
                    failure = status[len("Failed: "):]
                if fields.get("EXIT_STATUS", "").isdigit():
                    code = int(fields["EXIT_STATUS"])
            elif not os.read(alive_r, 512):  # the daemon is gone, never having served
                while True:  # a datagram sent just before it exited is still in the queue
                    try:
                        fields = _parse(listener.recv(65536, socket.MSG_DONTWAIT))
                    except BlockingIOError:
                        break
                    status = fields.get("STATUS", "")
                    if status.startswith("Failed: "):
                        failure = status[len("Failed: "):]
                    if fields.get("EXIT_STATUS", "").isdigit():
                        code = int(fields["EXIT_STATUS"])
                reason = failure or "the daemon exited before it served (see --error-logfile)"
                sys.stderr.write(f"Error: {reason}\n")
                sys.stderr.flush()
                os._exit(code if code is not None else EXIT_DIED)


def _parse(datagram: bytes) -> dict[str, str]:
    fields = {}
    for line in datagram.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields
