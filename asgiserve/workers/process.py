"""The supervisor's mechanics: forking a worker, its pipe, its record, exit statuses, --pid, --user.

Kept apart from supervisor.py so the decisions there read on their own.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from typing import Callable, Iterable, Optional

from ..config import Config
from ..errors import AsgiserveError, ConfigError
from . import worker as child


def fork_worker(run_child: Callable[[int], int], close_in_child: Iterable[int] = ()) -> tuple[int, int]:
    """Fork a worker: the child runs ``run_child(channel_fd)`` and exits with its result.

    Returns (pid, read end of the worker's pipe) in the supervisor. Raises OSError if fork fails.
    """
    r, w = os.pipe()
    # Blocked across fork so a signal meant for the new worker waits for its real handlers
    # instead of hitting the supervisor's queue-only handlers in the child (gunicorn#1910).
    signal.pthread_sigmask(signal.SIG_BLOCK, child.SUPERVISOR_SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, child.SUPERVISOR_SIGNALS)
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # the child never returns into the supervisor's loop
        code = child.EXIT_CRASH
        try:
            signal.set_wakeup_fd(-1)
            for fd in (r, *close_in_child):
                os.close(fd)
            code = run_child(w)
        except BaseException:
            child.logger.exception("Worker %d crashed", os.getpid())
        finally:
            child.flush_std_streams()
            os._exit(code)  # never run the supervisor's finally blocks or atexit hooks
    signal.pthread_sigmask(signal.SIG_UNBLOCK, child.SUPERVISOR_SIGNALS)
    os.close(w)
    os.set_blocking(r, False)
    return pid, r


def read_available(fd: int) -> tuple[bytes, bool]:
    """Everything readable now from a non-blocking pipe: (data, reached EOF)."""
    chunks: list[bytes] = []
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks), True
            chunks.append(data)
    except BlockingIOError:
        return b"".join(chunks), False
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.EIO):
            return b"".join(chunks), True
        raise


class Worker:
    __slots__ = ("pid", "fd", "generation", "age", "max_requests", "buffer", "last_seen", "ready",
                 "retiring", "stopping", "aborted", "killed", "kill_at", "error")

    def __init__(self, pid: int, fd: int, generation: int, age: int, max_requests: int) -> None:
        self.pid, self.fd, self.generation, self.age = pid, fd, generation, age
        self.max_requests = max_requests
        self.buffer = b""
        self.last_seen = time.monotonic()
        self.ready = False
        self.retiring = False  # --max-requests reached: replace first, then stop it
        self.stopping = False  # we sent TERM/QUIT/ABRT: its exit is expected
        self.aborted = False  # timed out (SIGABRT sent): its exit counts as a crash
        self.killed = False  # we sent SIGKILL
        self.kill_at: Optional[float] = None
        self.error: Optional[dict[str, str]] = None

    def feed(self, data: bytes, final: bool = False) -> list[bytes]:
        """Complete message lines from the worker's pipe (all of them when ``final``)."""
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if final and self.buffer:
            lines.append(self.buffer)
            self.buffer = b""
        return [line for line in lines if line]


class PidFile:
    """--pid FILE: the supervisor's PID, written atomically, removed on exit if still ours."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def _read(self) -> Optional[int]:
        try:
            with open(self.path, encoding="ascii") as fh:
                return int(fh.read().strip() or "0")
        except (OSError, ValueError):
            return None

    def check(self) -> None:
        pid = self._read()
        if not pid or pid == os.getpid():
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # stale file from a crashed run
        except PermissionError:
            pass
        raise AsgiserveError(f"--pid {self.path}: already running as PID {pid} (remove the file if it is stale)")

    def write(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(f"{os.getpid()}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise AsgiserveError(f"--pid {self.path}: cannot write: {exc.strerror or exc}") from None

    def remove(self) -> None:
        if self._read() == os.getpid():
            try:
                os.unlink(self.path)
            except OSError:  # already gone: nothing to clean up
                pass


def resolve_ids(config: Config) -> tuple[Optional[int], Optional[int]]:
    """--user/--group as numeric ids (names or numbers); checked before anything starts."""
    import grp
    import pwd

    uid = gid = None
    if config.user:
        try:
            uid = int(config.user) if config.user.isdigit() else pwd.getpwnam(config.user).pw_uid
        except KeyError:
            raise ConfigError(f"--user {config.user}: no such user") from None
    if config.group:
        try:
            gid = int(config.group) if config.group.isdigit() else grp.getgrnam(config.group).gr_gid
        except KeyError:
            raise ConfigError(f"--group {config.group}: no such group") from None
    changes = (uid is not None and uid != os.getuid()) or (gid is not None and gid != os.getgid())
    if changes and os.geteuid() != 0:
        raise ConfigError("--user/--group: switching user needs the supervisor to start as root")
    return uid, gid


def describe_exit(status: int, we_killed: bool) -> tuple[str, bool]:
    """("exited with code 1" | "was killed by signal 9 (SIGKILL)...", clean)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        text = f"was killed by signal {sig} ({name})"
        if sig == signal.SIGKILL and not we_killed:
            text += ". Perhaps out of memory?"
        return text, False
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return f"exited with code {code}", code == 0
