"""Helpers for process-level tests: a supervised asgiserve in its own process group, its log
lines as readiness signals, a bounded load client that counts every response, test apps.

Readiness is always a log line ("Listening on ...", "Ready: N worker(s) serving ..."), never a
sleep. Teardown kills only the process group of the child we started.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence, Union

from asgiserve.config import env_names, option_fields

DEADLINE = 20.0

APP = '''
import asyncio, json, os, time

VERSION = "v1"


def say(text):  # one write(2) per line: lines from several workers must not interleave
    os.write(2, f"{text}\\n".encode())


say(f"IMPORTED {os.getpid()}")


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("CRASH_AT_STARTUP"):
                os._exit(1)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/slow":
        say(f"SLOW-START {os.getpid()}")
        await asyncio.sleep(float(query or "1"))
    elif path == "/block":
        say(f"BLOCK-START {os.getpid()}")
        time.sleep(60)
    if path == "/whoami":
        body = json.dumps({"client": scope["client"], "scheme": scope["scheme"], "uid": os.getuid(),
                           "server": scope["server"]}).encode()
    else:
        body = f"{VERSION} {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def write_app(directory: Path, name: str = "workapp", source: str = APP) -> str:
    (directory / f"{name}.py").write_text(source)
    return f"{name}:app"


def clean_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    names = {n for f in option_fields() for n in env_names(f)} | {"ASGISERVE_APP"}
    drop = names | {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                    "GUNICORN_CMD_ARGS", "ASGISERVE_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a reload test rewrites a module within the same second
    env.update(extra or {})
    return env


class Supervised:
    """``python -m asgiserve ARGS`` in a new session; stderr collected line by line."""

    def __init__(self, args: Sequence[str], cwd: Path, env: Optional[dict[str, str]] = None,
                 prefix: Sequence[str] = (), pass_fds: Sequence[int] = ()) -> None:
        self.popen = subprocess.Popen(
            [*prefix, sys.executable, "-m", "asgiserve", *args],
            cwd=cwd, env=clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, start_new_session=True, pass_fds=tuple(pass_fds),
        )
        self.pid = self.popen.pid
        self.lines: list[str] = []
        self.closed = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    @property
    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait_for(self, pattern: str, since: int = 0, count: int = 1, timeout: float = DEADLINE) -> list[re.Match[str]]:
        """Block until ``count`` stderr lines after index ``since`` match the regex ``pattern``."""
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in (regex.search(x) for x in self.lines[since:]) if m]
                if len(found) >= count:
                    return found[:count]
                remaining = end - time.monotonic()
                if self.closed or remaining <= 0:
                    why = "process exited" if self.closed else "timed out"
                    raise AssertionError(f"{why} before {count} x {pattern!r} on stderr:\n{self.text}")
                self.cond.wait(remaining)

    def count(self, pattern: str, since: int = 0) -> int:
        regex = re.compile(pattern)
        with self.cond:
            return sum(1 for x in self.lines[since:] if regex.search(x))

    def port(self) -> int:
        return int(self.wait_for(rf"\[{self.pid}\] \[INFO\] Listening on http://127\.0\.0\.1:(\d+)")[0].group(1))

    def ready(self, since: int = 0, what: str = "Ready") -> list[int]:
        """Wait for the supervisor's "Ready: N worker(s) serving (pids ...)" line; return the pids."""
        m = self.wait_for(rf"{what}: \d+ worker\(s\) serving \(pids ([\d, ]+)\)", since)[0]
        return [int(p) for p in m.group(1).split(", ")]

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def finish(self, timeout: float = DEADLINE) -> int:
        code = self.popen.wait(timeout)
        self.thread.join(timeout)
        return code

    def kill(self) -> None:
        """Teardown: SIGKILL our child's process group (the supervisor and its workers), if left."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)
        else:
            try:  # workers orphaned by a killed supervisor are still in the group
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.popen.stderr is not None:
            self.thread.join(5)
            self.popen.stderr.close()


Address = Union[int, str]


def connect(address: Address, timeout: float = 10.0) -> socket.socket:
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
    else:
        sock = socket.create_connection(("127.0.0.1", address), timeout=timeout)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def get(address: Address, path: str = "/", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection with ``Connection: close``; (status, headers, body)."""
    sock = connect(address, timeout)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        raw = read_all(sock)
    finally:
        sock.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete response: {raw[:100]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if "content-length" in headers and len(body) != int(headers["content-length"]):
        raise ConnectionError(f"truncated body: {len(body)} of {headers['content-length']}")
    return status, headers, body


class Load:
    """``threads`` clients, each sending one request per fresh connection, until stopped.

    Every attempt ends as exactly one of: ok (200 + complete body) or failed (with the error).
    Bounded by ``max_total`` requests and each socket's timeout.
    """

    def __init__(self, address: Address, threads: int = 4, max_total: int = 200_000) -> None:
        self.address = address
        self.stop_event = threading.Event()
        self.lock = threading.Condition()
        self.ok = 0
        self.failed: list[str] = []
        self.by_body: Counter[str] = Counter()
        self.max_total = max_total
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                status, _, body = get(self.address, "/")
                result = None if status == 200 else f"status {status}"
            except (OSError, ValueError, IndexError) as exc:
                result, body = f"{type(exc).__name__}: {exc}", b""
            with self.lock:
                if result is None:
                    self.ok += 1
                    self.by_body[body.decode()] += 1
                else:
                    self.failed.append(result)
                self.lock.notify_all()
                if self.ok + len(self.failed) >= self.max_total:
                    self.stop_event.set()

    def total(self) -> int:
        with self.lock:
            return self.ok + len(self.failed)

    def wait_responses(self, n: int, timeout: float = DEADLINE) -> None:
        """Block until ``n`` more attempts have completed (progress, not time)."""
        end = time.monotonic() + timeout
        with self.lock:
            target = self.ok + len(self.failed) + n
            while self.ok + len(self.failed) < target:
                remaining = end - time.monotonic()
                if remaining <= 0 or self.stop_event.is_set():
                    raise AssertionError(f"load made no progress: ok={self.ok} failed={self.failed[:5]}")
                self.lock.wait(remaining)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)

    def summary(self) -> str:
        return f"served={self.ok} failed={len(self.failed)} {self.failed[:5]}"
