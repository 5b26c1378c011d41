"""Soak: verified requests against a server that is paused at random, on both parsers, ASGI and WSGI.

Throughput tools (wrk) do not check bodies. This one checks every byte: downloads with and
without a Content-Length, uploads echoed back (Content-Length, chunked, Expect: 100-continue),
uploads the app ignores, HEAD, pipelined GETs and pipelined uploads (some answered before they
are read), slow readers, HTTP/1.0 and Connection: close requests read to EOF, and downloads the
client abandons with a reset. Meanwhile the
server process is stopped and continued (SIGSTOP/SIGCONT) every few milliseconds, which
shuffles how bytes and thread switches fall, the way a loaded machine does.
It found a duplicated batch in the WSGI bridge and a connection that stopped reading.

    .venv/bin/python -m benchmarks.soak [--seconds 15] [--modes httptools-asgi,h11-wsgi,...] [--no-pause]
                                        [--server-args '--workers 2 --loop asyncio'] [--hup SECONDS]

Exits 1 when any response was wrong or any request failed; prints each failure. A
RemoteDisconnected on a connection idle for longer than the server's --timeout-keep-alive is the
keep-alive race every server has (the server closed the connection as the request left; RFC 9112
9.3.1 has clients retry): each failure says how long its connection had been idle.
Only the server it started is signalled (its process group: with --workers, the workers too); everything
is on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from benchmarks.apps.soak import HELLO, pattern

REPO = Path(__file__).resolve().parents[1]
MODES = ("httptools-asgi", "h11-asgi", "httptools-wsgi", "h11-wsgi")
KINDS = ("hello", "download", "download-chunked", "echo", "echo-chunked", "echo-expect", "ignore", "head",
         "pipeline", "pipeline-posts", "slow-reader", "close", "abandon")
TIMEOUT = 15.0  # per request: far above any pause, so a timeout means a hang


@dataclass
class Tally:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, problem: Optional[str]) -> None:
        with self.lock:
            if problem is None:
                self.ok += 1
            else:
                self.failures.append(f"{kind}: {problem}")


def start_server(mode: str, extra: "list[str]") -> tuple[subprocess.Popen[bytes], int]:
    """Start asgiserve on port 0 and return it with the port its log line announces."""
    http_impl, interface = mode.split("-")
    app = "benchmarks.apps.soak:" + ("wsgi_app" if interface == "wsgi" else "app")
    cmd = [sys.executable, "-m", "asgiserve", app, "--host", "127.0.0.1", "--port", "0", "--http", http_impl,
           "--interface", "wsgi" if interface == "wsgi" else "asgi3", "--no-access-log", "--log-level", "info", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # its own group: workers too
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line:
            break
        found = re.search(r"Listening on http://127\.0\.0\.1:(\d+)", line)
        if found:
            threading.Thread(target=_drain, args=(proc,), daemon=True).start()
            return proc, int(found.group(1))
    proc.kill()
    raise SystemExit(f"soak: the {mode} server did not start")


SERVER_LOG: list[str] = []


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip()
        if "[ERROR]" in line or "[WARNING]" in line or "Traceback" in line:
            SERVER_LOG.append(line)


def one_request(conn: http.client.HTTPConnection, port: int, kind: str, rnd: random.Random) -> Optional[str]:
    """Do one request of ``kind``; None when the response is exactly right, else what was wrong."""
    if kind == "hello":
        conn.request("GET", "/hello")
        return _check(conn.getresponse(), HELLO)
    if kind in ("download", "download-chunked"):
        n = rnd.choice((0, 1, 5000, 65536, 65537, 300_000, 1 << 20))
        conn.request("GET", f"/download?n={n}&cl={int(kind == 'download')}")
        return _check(conn.getresponse(), pattern(n))
    if kind in ("echo", "echo-chunked", "ignore"):
        n = rnd.choice((1, 1000, 65536, 200_000, 1 << 20, 3 << 20))
        data = rnd.randbytes(n)
        path = "/ignore" if kind == "ignore" else "/echo"
        if kind == "echo-chunked":
            pieces = [data[i:i + 70_000] for i in range(0, n, 70_000)]
            conn.request("POST", path, body=iter(pieces), encode_chunked=True,
                         headers={"Transfer-Encoding": "chunked"})
            return _check(conn.getresponse(), data)
        conn.request("POST", path, body=data)
        return _check(conn.getresponse(), b"ok" if kind == "ignore" else data)
    if kind == "echo-expect":
        data = rnd.randbytes(rnd.choice((1, 70_000, 1 << 20)))
        conn.putrequest("POST", "/echo")
        conn.putheader("Content-Length", str(len(data)))
        conn.putheader("Expect", "100-continue")  # http.client sends the body at once: allowed
        conn.endheaders(data)
        return _check(conn.getresponse(), data)
    if kind == "head":
        n = rnd.choice((0, 5000, 1 << 20))
        conn.request("HEAD", f"/download?n={n}&cl={rnd.randint(0, 1)}")
        response = conn.getresponse()
        body = response.read()
        return None if response.status == 200 and body == b"" else f"HEAD: {response.status}, {len(body)} bytes"
    if kind == "pipeline":
        return _pipeline(port, rnd.randint(2, 20))
    if kind == "pipeline-posts":
        return _pipeline_posts(port, rnd)
    if kind == "slow-reader":
        return _slow_reader(port, rnd)
    if kind == "close":
        return _close(port, rnd)
    return _abandon(port, rnd)


def _check(response: http.client.HTTPResponse, want: bytes) -> Optional[str]:
    body = response.read()
    if response.status != 200:
        return f"status {response.status}: {body[:200]!r}"
    if body != want:
        return f"body of {len(body)} bytes, wanted {len(want)}" + (" (same length, other bytes)" if len(body) == len(want) else "")
    return None


def _pipeline(port: int, count: int) -> Optional[str]:
    """``count`` GETs in one write; every answer must come back, in order, exactly once."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(b"GET /download?n=%d HTTP/1.1\r\nHost: soak\r\n\r\n" % i for i in range(count)))
        return _read_responses(sock, [pattern(i) for i in range(count)])


def _read_responses(sock: socket.socket, wants: "list[bytes]") -> Optional[str]:
    """Read len(wants) Content-Length responses from ``sock`` and compare their bodies."""
    buffer = b""
    for i, want in enumerate(wants):
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return f"connection closed after {i} of {len(wants)} responses"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if not head.startswith(b"HTTP/1.1 200") or found is None:
            return f"response {i}: {head[:200]!r}"
        length = int(found.group(1))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return f"connection closed inside response {i}"
            buffer += chunk
        if buffer[:length] != want:
            return f"response {i} has the wrong body"
        buffer = buffer[length:]
    sock.settimeout(0.2)
    try:
        extra = sock.recv(65536)
    except socket.timeout:
        extra = b""
    return f"{len(extra)} bytes after the last response" if extra else None


def _pipeline_posts(port: int, rnd: random.Random) -> Optional[str]:
    """Pipelined uploads, some echoed and some ignored by the app, in one write."""
    requests, wants = [], []
    for _ in range(rnd.randint(2, 8)):
        data = rnd.randbytes(rnd.choice((0, 100, 70_000, 300_000)))
        path = rnd.choice((b"/echo", b"/ignore"))
        requests.append(b"POST %s HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n%s" % (path, len(data), data))
        wants.append(data if path == b"/echo" else b"ok")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sender = threading.Thread(target=sock.sendall, args=(b"".join(requests),))
        sender.start()  # while we read: the server may answer before it has read everything
        try:
            return _read_responses(sock, wants)
        finally:
            sender.join(TIMEOUT)


def _slow_reader(port: int, rnd: random.Random) -> Optional[str]:
    """A big download read in small sips with pauses: the server's write side backs up."""
    n = rnd.choice((2 << 20, 6 << 20))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(b"GET /download?n=%d HTTP/1.1\r\nHost: soak\r\n\r\n" % n)
        buffer = bytearray()
        body_at = -1
        while body_at < 0 or len(buffer) - body_at < n:
            chunk = sock.recv(rnd.choice((4096, 65536)))
            if not chunk:
                return "closed inside the response"
            buffer += chunk
            if body_at < 0 and b"\r\n\r\n" in buffer:
                body_at = buffer.index(b"\r\n\r\n") + 4
            if rnd.random() < 0.02:
                time.sleep(0.01)
        if not buffer.startswith(b"HTTP/1.1 200"):
            return f"slow reader: {bytes(buffer[:200])!r}"
        return None if buffer[body_at:] == pattern(n) else f"slow reader: {len(buffer) - body_at} body bytes, wanted {n}"


def _close(port: int, rnd: random.Random) -> Optional[str]:
    """One request that ends its connection: HTTP/1.0 (a body without Content-Length is then
    delimited by the close) or HTTP/1.1 with Connection: close. Read to EOF."""
    n = rnd.choice((0, 5000, 300_000))
    version = rnd.choice((b"1.0", b"1.1"))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /download?n=%d&cl=%d HTTP/%s\r\nHost: soak\r\nConnection: close\r\n\r\n"
                     % (n, rnd.randint(0, 1), version))
        buffer = bytearray()
        while chunk := sock.recv(65536):
            buffer += chunk
    head, _, body = bytes(buffer).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return f"close: {head[:200]!r}"
    if b"transfer-encoding: chunked" in head.lower():
        if version == b"1.0":
            return "close: chunked framing to an HTTP/1.0 client"
        body = _dechunk(body)
    return None if body == pattern(n) else f"close: body of {len(body)} bytes, wanted {n}"


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2:]


def _abandon(port: int, rnd: random.Random) -> Optional[str]:
    """Start a big download, read a little of it, then reset the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /download?n=%d HTTP/1.1\r\nHost: soak\r\n\r\n" % (8 << 20))
        got = 0
        want = rnd.randint(1, 300_000)
        while got < want:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed before the client left"
            got += len(chunk)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    return None


def client(port: int, seed: int, until: float, tally: Tally) -> None:
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    idle_from = None  # when this connection's last response ended (keep-alive idle time)
    while time.monotonic() < until:
        kind = rnd.choice(KINDS)
        started = time.monotonic()
        try:
            problem = one_request(conn, port, kind, rnd)
        except (OSError, http.client.HTTPException) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            if idle_from is not None:
                problem += f" (connection idle {started - idle_from:.2f} s before this request)"
        tally.record(kind, problem)
        if kind not in ("pipeline", "abandon"):  # those use connections of their own
            idle_from = time.monotonic()
        if problem is not None:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            idle_from = None
    conn.close()


def pause_loop(pid: int, until: float, stop: threading.Event) -> None:
    rnd = random.Random(pid)
    while time.monotonic() < until and not stop.is_set():
        time.sleep(rnd.uniform(0.001, 0.02))
        os.killpg(pid, signal.SIGSTOP)
        time.sleep(rnd.uniform(0.0001, 0.003))
        os.killpg(pid, signal.SIGCONT)


def hup_loop(pid: int, every: float, until: float, stop: threading.Event) -> None:
    """Graceful reloads (SIGHUP to the supervisor) while the clients run."""
    while not stop.wait(every) and time.monotonic() < until - every:
        os.kill(pid, signal.SIGHUP)


def soak(mode: str, seconds: float, clients: int, pause: bool, extra: "list[str]" = [], hup: float = 0) -> Tally:
    SERVER_LOG.clear()
    proc, port = start_server(mode, extra)
    tally = Tally()
    stop = threading.Event()
    until = time.monotonic() + seconds
    try:
        workers = [threading.Thread(target=client, args=(port, i, until, tally)) for i in range(clients)]
        helpers = [threading.Thread(target=pause_loop, args=(proc.pid, until, stop))] if pause else []
        if hup:
            helpers.append(threading.Thread(target=hup_loop, args=(proc.pid, hup, until, stop)))
        for t in workers + helpers:
            t.start()
        for t in workers:
            t.join(seconds + 2 * TIMEOUT)
        stop.set()
        for t in helpers:
            t.join()
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            tally.failures.append("server did not stop within 20 s of SIGINT")
    # Abandoned downloads are logged at debug; anything louder is a finding.
    tally.failures.extend("server log: " + line for line in SERVER_LOG)
    return tally


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per mode")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-pause", action="store_true", help="do not SIGSTOP/SIGCONT the server")
    parser.add_argument("--hup", type=float, default=0, metavar="SECONDS",
                        help="send SIGHUP (graceful reload) this often; use with --server-args '--workers 2'")
    parser.add_argument("--server-args", default="", help="more asgiserve arguments, e.g. '--workers 2 --loop asyncio'")
    args = parser.parse_args(argv)
    failed = False
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}")
        tally = soak(mode, args.seconds, args.clients, not args.no_pause, shlex.split(args.server_args), args.hup)
        print(f"{mode:15} {tally.ok:7} verified, {len(tally.failures)} failed", flush=True)
        for failure in tally.failures[:20]:
            print("   ", failure)
        failed = failed or bool(tally.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
