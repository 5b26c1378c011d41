"""Soak: verified requests against a server that is paused at random, on both parsers, ASGI and WSGI.

Throughput tools (wrk) do not check bodies. This one checks every byte: downloads with and
without a Content-Length, uploads echoed back (Content-Length, chunked, Expect: 100-continue),
uploads the app ignores, HEAD, pipelined GETs and pipelined uploads (some answered before they
are read), slow readers, HTTP/1.0 and Connection: close requests read to EOF, and downloads the
client abandons with a reset. Meanwhile the
server process is stopped and continued (SIGSTOP/SIGCONT) every few milliseconds, which
shuffles how bytes and thread switches fall, the way a loaded machine does.
It found a duplicated batch in the WSGI bridge and a connection that stopped reading.

In the ASGI modes, WebSocket clients (raw frames, asyncio, in a process of their own) run
alongside: handshakes checked field by field, permessage-deflate offered in several shapes (or
not), echoes of text (1- to 4-byte UTF-8) and binary from empty to 1 MiB, compressed or not,
fragmented at any byte with pings between the fragments, pipelined messages, bursts from the
server read slowly, messages sent while the app sleeps (the server stops reading, then resumes),
the close handshake either way with chosen codes and reasons, closes while echoes or a burst are
in flight, denied handshakes, and connections left with a reset or a FIN (the app checks it is
told 1006). Every message and close frame is compared byte for byte; a protocol error by the
server, an unexpected close code, a connection dropped without a close frame or a wait over
15 s fails. The server pings every second. With --hup (or --max-requests), a close with 1012
(service restart) is expected: it is counted, the client reconnects and carries on. WSGI modes
have no WebSockets.

    .venv/bin/python -m benchmarks.soak [--seconds 15] [--modes httptools-asgi,h11-wsgi,...] [--no-pause]
                                        [--clients 8] [--ws-clients 4]
                                        [--server-args '--workers 2 --loop asyncio'] [--hup SECONDS]

Exits 1 when any response or WebSocket message was wrong or any request failed; prints each
failure. A RemoteDisconnected on a connection idle for longer than the server's --timeout-keep-alive is the
keep-alive race every server has (the server closed the connection as the request left; RFC 9112
9.3.1 has clients retry): each failure says how long its connection had been idle.
Only the server it started is signalled (its process group: with --workers, the workers too); everything
is on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import http.client
import multiprocessing
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
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmarks.apps.soak import DENIED, HELLO, WS_COMMAND, burst_message, pattern

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
    in_traceback = False
    for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip()
        if "[ERROR]" in line or "[WARNING]" in line or "Traceback" in line:
            SERVER_LOG.append(line)
            in_traceback = "Traceback" in line
        elif in_traceback and not line.startswith("["):
            if not line.startswith(" "):  # the exception: "Traceback ... <exception>" in one failure
                SERVER_LOG[-1] += " ... " + line
        else:
            in_traceback = False


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
    said_close = False
    for i, want in enumerate(wants):
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return f"connection closed after {i} of {len(wants)} responses" + \
                    (" (the last said Connection: close)" if said_close else "")
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        said_close = re.search(rb"(?i)\r\nconnection: *close", head) is not None
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


# ---------------------------------------------------------------------------------------------
# WebSocket clients (ASGI modes): raw frames, every byte checked, asyncio, in a process of their own.

WS_TIMEOUT = TIMEOUT  # per wait (a message, a pong, the close, EOF): a timeout means a hang
WS_SESSION_TIMEOUT = 120.0  # a whole connection, however many waits it makes
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# (name, offer): the server may accept or decline each; its answer must fit the offer.
DEFLATE_OFFERS = (
    ("no offer", None), ("no offer", None),
    ("browser offer", "permessage-deflate; client_max_window_bits"),
    ("bare offer", "permessage-deflate"),
    ("no-takeover offer",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"),
    ("small-window offer", "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"),
    ("offer after an unknown one", "x-soak-unknown, permessage-deflate; client_max_window_bits=15"),
)
TEXT_ALPHABET = "abcdefghij KLMNOP 0123456789 éßøñü €中文✓ 😀🚀𝄞"  # 1- to 4-byte UTF-8
CLOSE_CODES = (1000, 1001, 1003, 1007, 1008, 1011, 3000, 3999, 4000, 4999)
REASONS = ("", "bye", "fin de la sesión ✓", "😀" * 30)  # the last is 120 bytes (the limit is 123)


@dataclass
class WsTally:
    connections: int = 0  # WebSockets opened (101 checked)
    deflate: int = 0  # of which with permessage-deflate
    denied: int = 0  # handshakes the app denied on request (403 checked)
    messages: int = 0  # messages received and verified, byte for byte
    restarts: int = 0  # closes with 1012 during reloads (expected: the client reconnects)
    failures: list[str] = field(default_factory=list)
    slowest_close: float = 0.0  # seconds from the close handshake's start to the server's EOF
    slowest_close_in: str = ""  # the ending that took it


class WsFail(Exception):
    """A wrong byte, a protocol violation by the server, an unexpected close, or a hang."""


class WsClosed(Exception):
    """The server sent a close frame (and the client answered it)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"close {code} {reason!r}")
        self.code = code
        self.reason = reason


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    keys = int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ keys).to_bytes(n, "little")


def _frame(rnd: random.Random, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame."""
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head += struct.pack(">BH", 0x80 | 126, n)
    else:
        head += struct.pack(">BQ", 0x80 | 127, n)
    key = rnd.randbytes(4)
    return bytes(head) + key + _mask(payload, key)


def _parse_extensions(value: str) -> "list[tuple[str, dict[str, Optional[str]]]]":
    result = []
    for ext in value.split(","):
        name, *params = [p.strip() for p in ext.split(";")]
        parsed: dict[str, Optional[str]] = {}
        for param in params:
            key, eq, val = param.partition("=")
            parsed[key.strip().lower()] = val.strip().strip('"') if eq else None
        result.append((name.lower(), parsed))
    return result


class Deflate:
    """The client's side of permessage-deflate (RFC 7692), as the server's answer set it up."""

    def __init__(self, offer: str, answer: str) -> None:
        offered = dict(_parse_extensions(offer))["permessage-deflate"]
        extensions = _parse_extensions(answer)
        if len(extensions) != 1 or extensions[0][0] != "permessage-deflate":
            raise WsFail(f"Sec-WebSocket-Extensions {answer!r} to the offer {offer!r}")
        params = extensions[0][1]
        for name, value in params.items():
            if name not in ("server_no_context_takeover", "client_no_context_takeover",
                            "server_max_window_bits", "client_max_window_bits"):
                raise WsFail(f"unknown permessage-deflate parameter in {answer!r}")
            if name.endswith("takeover") and value is not None:
                raise WsFail(f"{name} with a value in {answer!r}")
        if "server_no_context_takeover" in offered and "server_no_context_takeover" not in params:
            raise WsFail(f"server_no_context_takeover requested, not in the answer {answer!r}")
        self.server_reset = "server_no_context_takeover" in params
        self.client_reset = "client_no_context_takeover" in params
        try:
            self.server_bits = int(params.get("server_max_window_bits") or 15)
            self.client_bits = int(params.get("client_max_window_bits") or 15)
        except ValueError:
            raise WsFail(f"window bits in {answer!r}") from None
        if "server_max_window_bits" in offered and self.server_bits > int(offered["server_max_window_bits"] or 15):
            raise WsFail(f"server_max_window_bits above the offer in {answer!r}")
        if "client_max_window_bits" in params:
            if "client_max_window_bits" not in offered:
                raise WsFail(f"client_max_window_bits answered without being offered: {answer!r}")
            if self.client_bits > int(offered["client_max_window_bits"] or 15):
                raise WsFail(f"client_max_window_bits above the offer in {answer!r}")
        if not (8 <= self.server_bits <= 15 and 8 <= self.client_bits <= 15):
            raise WsFail(f"window bits out of range in {answer!r}")
        self.compressor: Any = None
        self.decompressor: Any = None
        self.label = f"deflate s{self.server_bits}/c{self.client_bits}" + \
            (" no-takeover" if self.server_reset or self.client_reset else "")

    def compress(self, data: bytes) -> bytes:
        if self.compressor is None or self.client_reset:
            self.compressor = zlib.compressobj(wbits=-max(self.client_bits, 9))
        out: bytes = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def decompress(self, data: bytes) -> bytes:
        if self.decompressor is None or self.server_reset:
            # With server_no_context_takeover, a message that leans on an earlier one fails here;
            # a window above server_max_window_bits does too ("invalid distance too far back").
            self.decompressor = zlib.decompressobj(wbits=-self.server_bits)
        try:
            out: bytes = self.decompressor.decompress(data + b"\x00\x00\xff\xff")
        except zlib.error as exc:
            raise WsFail(f"a compressed message does not inflate: {exc}") from None
        if self.decompressor.unconsumed_tail or self.decompressor.eof:
            raise WsFail("a compressed message has bytes after its end")
        return out


class _Reader(asyncio.StreamReader):
    """A StreamReader that still hands out what arrived before a connection error: asyncio's raises
    the error at once, buffered bytes and all (a close frame followed by a reset was lost)."""

    error: Optional[BaseException] = None

    def set_exception(self, exc: BaseException) -> None:
        self.error = exc
        self.feed_eof()


class WsConn:
    """One client WebSocket: a reader task parses and checks every frame the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rnd: random.Random,
                 deflate: Optional[Deflate], label: str) -> None:
        self.reader = reader
        self.writer = writer
        self.rnd = rnd
        self.deflate = deflate
        self.label = label  # the connection's setup, for failure messages
        self.inbox: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
        self.end: Optional[Exception] = None  # WsClosed or WsFail: what ended reading
        self.ended = asyncio.Event()
        self.eof = asyncio.Event()  # the server closed the TCP connection after the close handshake
        self.close_sent = False
        self.close_started = 0.0
        self.pongs: deque[tuple[bytes, asyncio.Future[bool]]] = deque()
        self.slow = False  # read in small sips with pauses
        self.late: Optional[str] = None  # what the server sent wrong after its close frame
        self.history: list[str] = []  # the operations so far, for failure messages
        self.sips = random.Random(rnd.random())  # the reader task's own
        self.task = asyncio.get_running_loop().create_task(self._read())

    # -- reading -------------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            await self._frames()
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            if self.end is None:
                error = getattr(self.reader, "error", None) or exc
                what = "EOF" if isinstance(error, asyncio.IncompleteReadError) else type(error).__name__
                self._finish(WsFail(f"connection dropped without a close frame ({what})"))
            else:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    self.late = f"{len(exc.partial)} bytes after the close frame, then EOF"
                self.eof.set()  # after the close frame (a reset here loses nothing)
        except WsFail as exc:
            if self.end is None:
                self._finish(exc)
            else:  # after the close frame: the close handshake is what failed
                self.late = str(exc)
                self.eof.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in this client: report it rather than hang
            self._finish(WsFail(f"client error: {exc!r}"))

    def _finish(self, exc: Exception) -> None:
        if self.end is None:
            self.end = exc
            self.ended.set()
        for _, waiter in self.pongs:
            if not waiter.done():
                waiter.set_result(False)  # no pong: wait() raises what ended reading
        self.pongs.clear()

    async def _take(self, n: int) -> bytes:
        if not self.slow or n <= 4096:
            return await self.reader.readexactly(n)
        parts = []
        while n:
            part = await self.reader.readexactly(min(n, 4096))
            parts.append(part)
            n -= len(part)
            if self.sips.random() < 0.25:
                await asyncio.sleep(0.002)
        return b"".join(parts)

    async def _frames(self) -> None:
        fragments: list[bytes] = []
        opcode0 = None
        compressed = False
        while True:
            b0, b1 = await self.reader.readexactly(2)
            fin, rsv1, rsv23, opcode = b0 & 0x80, b0 & 0x40, b0 & 0x30, b0 & 0x0F
            if b1 & 0x80:
                raise WsFail("the server masked a frame")
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", await self.reader.readexactly(2))
                if length < 126:
                    raise WsFail(f"16-bit length {length}: not the minimal encoding")
            elif length == 127:
                (length,) = struct.unpack(">Q", await self.reader.readexactly(8))
                if length < 65536:
                    raise WsFail(f"64-bit length {length}: not the minimal encoding")
            payload = await self._take(length)
            if self.end is not None and opcode != PONG:
                # A pong may follow the server's close frame: RFC 6455 5.5.2 has an endpoint answer
                # every ping until it *received* a close frame. Data, pings, a second close may not.
                raise WsFail(f"a frame (opcode {opcode}) after the close frame")
            if rsv23 or (rsv1 and (self.deflate is None or opcode not in (TEXT, BINARY))):
                raise WsFail(f"reserved bits {b0 & 0x70:#x} on opcode {opcode}")
            if opcode >= 0x8:
                if not fin or length > 125:
                    raise WsFail(f"control frame {opcode} fragmented or {length} bytes long")
                self._control(opcode, payload)
                continue
            if opcode == CONT:
                if opcode0 is None:
                    raise WsFail("a continuation frame outside a message")
            elif opcode in (TEXT, BINARY):
                if opcode0 is not None:
                    raise WsFail("a new message inside a fragmented one")
                opcode0, compressed, fragments = opcode, bool(rsv1), []
            else:
                raise WsFail(f"reserved opcode {opcode}")
            fragments.append(payload)
            if self.slow and self.sips.random() < 0.05:
                await asyncio.sleep(0.005)
            if not fin:
                continue
            data = b"".join(fragments)
            if compressed:
                assert self.deflate is not None
                data = self.deflate.decompress(data)
            if opcode0 == TEXT:
                try:
                    self.inbox.put_nowait((True, data.decode("utf-8")))
                except UnicodeDecodeError:
                    raise WsFail("a text message that is not UTF-8") from None
            else:
                self.inbox.put_nowait((False, data))
            opcode0 = None

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            if not self.close_sent:
                self._send_frame(PONG, payload)
        elif opcode == PONG:
            if not self.pongs and self.end is not None:
                return  # our ping was failed when the close frame came; its pong is late, not wrong
            if not self.pongs:
                raise WsFail(f"a pong nobody asked for: {payload!r}")
            want, waiter = self.pongs.popleft()
            if payload != want:
                raise WsFail(f"pong {payload!r}, wanted {want!r}")
            waiter.set_result(True)
        elif opcode == CLOSE:
            if len(payload) == 1:
                raise WsFail("a close frame with a 1-byte payload")
            code = struct.unpack(">H", payload[:2])[0] if payload else 1005
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise WsFail(f"a close reason that is not UTF-8: {payload!r}") from None
            if payload and not (code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
                                or 3000 <= code <= 4999):
                raise WsFail(f"close code {code} may not be sent")
            if not self.close_sent:
                self.close_started = time.monotonic()
                self._send_frame(CLOSE, payload)  # echo it, as servers do
                self.close_sent = True
            self._finish(WsClosed(code, reason))
        else:
            raise WsFail(f"reserved control opcode {opcode}")

    # -- writing -------------------------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> None:
        if self.close_sent:
            raise WsFail("sending after the close frame (client bug)")
        self.writer.write(_frame(self.rnd, opcode, payload, fin, rsv1))

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(self.writer.drain(), WS_TIMEOUT)
        except asyncio.TimeoutError:
            raise WsFail(f"the server read nothing for {WS_TIMEOUT:g} s") from None
        except (ConnectionError, OSError):
            await self._wait_end()

    async def _wait_end(self) -> None:
        """Writing failed: reading says why (a close frame, or a connection dropped without one)."""
        try:
            await asyncio.wait_for(self.ended.wait(), WS_TIMEOUT)
        except asyncio.TimeoutError:
            raise WsFail("writing failed, and reading neither ended nor got a close frame") from None
        assert self.end is not None
        raise self.end

    def _check_open(self) -> None:
        if self.end is not None:
            raise self.end

    async def send(self, data: "str | bytes", *, fragments: int = 1, compress: bool = False,
                   pings: bool = False) -> None:
        """One message, optionally compressed, cut into ``fragments`` frames (at any byte,
        inside a UTF-8 character too; empty fragments included) with pings between them."""
        self._check_open()
        text = isinstance(data, str)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        if compress:
            assert self.deflate is not None
            payload = self.deflate.compress(payload)
        cuts = sorted(self.rnd.randint(0, len(payload)) for _ in range(fragments - 1))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)])]
        waiters = []
        for i, piece in enumerate(pieces):
            self._check_open()
            last = i == len(pieces) - 1
            self._send_frame((TEXT if text else BINARY) if i == 0 else CONT, piece, fin=last, rsv1=compress and i == 0)
            if not last:
                if pings and self.rnd.random() < 0.5:
                    waiters.append(self.ping(self.rnd.randbytes(self.rnd.randint(0, 125))))
                await self._drain()
                if self.rnd.random() < 0.3:
                    await asyncio.sleep(0.001)  # let the server read the message in parts
        await self._drain()
        for waiter in waiters:
            await self.wait(waiter, "a pong")

    def ping(self, payload: bytes) -> "asyncio.Future[bool]":
        self._check_open()
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pongs.append((payload, waiter))
        self._send_frame(PING, payload)
        return waiter

    async def wait(self, waiter: "asyncio.Future[bool]", what: str) -> None:
        try:
            answered = await asyncio.wait_for(asyncio.shield(waiter), WS_TIMEOUT)
        except asyncio.TimeoutError:
            raise WsFail(f"no {what} within {WS_TIMEOUT:g} s") from None
        if not answered:
            assert self.end is not None
            raise self.end

    async def recv(self, what: str) -> "tuple[bool, Any]":
        """The next message (text?, data); raises WsClosed or WsFail when reading ended first."""
        if self.inbox.empty():
            getter = asyncio.ensure_future(self.inbox.get())
            ended = asyncio.ensure_future(self.ended.wait())
            done, _ = await asyncio.wait((getter, ended), timeout=WS_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            if getter in done:
                return getter.result()
            getter.cancel()
            if not done:
                raise WsFail(f"no {what} within {WS_TIMEOUT:g} s")
        if not self.inbox.empty():
            return self.inbox.get_nowait()
        assert self.end is not None
        raise self.end

    async def expect(self, want: "str | bytes", what: str, tally: WsTally, burst: bool = False) -> None:
        text, got = await self.recv(what)
        if text != isinstance(want, str) or got != want:
            kind = "text" if text else "binary"
            detail = f"{kind} of {len(got)}" + (" (same length, other content)" if len(got) == len(want) else "")
            if burst and isinstance(got, bytes) and len(got) >= 8:
                detail += f", its header says message {struct.unpack('>I', got[:4])[0]}"
            elif burst and isinstance(got, str) and len(got) >= 16:
                detail += f", its header says message {int(got[:8], 16) if got[:8].isalnum() else got[:8]!r}"
            raise WsFail(f"{what}: got {detail}, wanted {'text' if isinstance(want, str) else 'binary'} of {len(want)}")
        tally.messages += 1

    async def close(self, code: Optional[int], reason: str) -> "tuple[int, str]":
        """Start the close handshake; returns the server's close (code, reason) once it closed TCP."""
        self._check_open()
        payload = b"" if code is None else struct.pack(">H", code) + reason.encode()
        self._send_frame(CLOSE, payload)
        self.close_sent = True
        self.close_started = time.monotonic()
        await self._drain()
        return await self.closed_by_server()

    async def closed_by_server(self) -> "tuple[int, str]":
        """After a close frame went out: the server's close frame must come, then its EOF."""
        try:
            await asyncio.wait_for(self.ended.wait(), WS_TIMEOUT)
        except asyncio.TimeoutError:
            raise WsFail(f"no close frame within {WS_TIMEOUT:g} s of ours") from None
        if not isinstance(self.end, WsClosed):
            assert self.end is not None
            raise self.end
        await self.wait_eof()
        return self.end.code, self.end.reason

    async def wait_eof(self) -> float:
        """The server must end the TCP connection after the close handshake; returns how long that took."""
        try:
            await asyncio.wait_for(self.eof.wait(), WS_TIMEOUT)
        except asyncio.TimeoutError:
            raise WsFail(f"the server kept the connection open {WS_TIMEOUT:g} s after the close handshake") from None
        if self.late is not None:
            raise WsFail(self.late)
        return time.monotonic() - self.close_started

    def abort(self, reset: bool = False) -> None:
        self.task.cancel()
        transport = self.writer.transport
        if transport.is_closing():
            return  # closed already (by the server's EOF or a reset): nothing to reset
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()


def _ws_text(rnd: random.Random, chars: int) -> str:
    if chars <= 4096:
        return "".join(rnd.choices(TEXT_ALPHABET, k=chars))
    piece = "".join(rnd.choices(TEXT_ALPHABET, k=4096))
    return (piece * (chars // 4096 + 1))[:chars]


def _ws_bytes(rnd: random.Random, n: int) -> bytes:
    if rnd.random() < 0.5:
        return rnd.randbytes(n)  # incompressible
    return (rnd.randbytes(rnd.randint(1, 300)) * (n // 2 + 1))[:n]  # compressible


def _ws_message(rnd: random.Random, big: bool = True) -> "str | bytes":
    """Text (1- to 4-byte characters) or binary, empty to 1 MiB, around the 7/16/64-bit length edges."""
    if rnd.random() < 0.45:
        chars = (0, 1, 10, 125, 126, 2000, 20_000, 40_000, 400_000) if big else (0, 1, 10, 125, 2000)
        return _ws_text(rnd, rnd.choice(chars))  # 40,000 chars are about 64 KiB; 400,000 about 1 MiB
    sizes = (0, 1, 125, 126, 127, 1000, 65535, 65536, 65537, 1 << 20) if big else (0, 1, 125, 126, 1000, 4000)
    return _ws_bytes(rnd, rnd.choice(sizes))


async def _ws_send(ws: WsConn, rnd: random.Random, data: "str | bytes") -> None:
    fragments = 1 if rnd.random() < 0.6 else rnd.randint(2, 6)
    compress = ws.deflate is not None and rnd.random() < 0.75  # the others go uncompressed (RSV1 clear)
    await ws.send(data, fragments=fragments, compress=compress, pings=rnd.random() < 0.3)


async def _ws_echo(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    data = _ws_message(rnd)
    await _ws_send(ws, rnd, data)
    await ws.expect(data, "echo", tally)


async def _ws_pipeline(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """Messages back to back, then their echoes, in order."""
    sent = [_ws_message(rnd, big=False) for _ in range(rnd.randint(2, 40))]
    for data in sent:
        await _ws_send(ws, rnd, data)
    for i, data in enumerate(sent):
        await ws.expect(data, f"echo {i} of {len(sent)} pipelined", tally)


async def _ws_ping(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    waiters = [ws.ping(rnd.randbytes(rnd.choice((0, 1, 4, 125)))) for _ in range(rnd.randint(1, 3))]
    await ws._drain()
    for waiter in waiters:
        await ws.wait(waiter, "pong")


async def _ws_burst(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """The server sends a burst; read slowly at times, so its sends wait for the client."""
    count, size = rnd.choice(((300, 0), (200, 10), (100, 1000), (40, 65536), (20, 70_000), (3, 1 << 20)))
    text = rnd.random() < 0.3
    ws.slow = rnd.random() < 0.4
    await ws.send(f"{WS_COMMAND}burst {count} {size} {'text' if text else 'bytes'}")
    for i in range(count):
        await ws.expect(burst_message(i, size, text), f"message {i} of a burst of {count} x {size}"
                        + (" read slowly" if ws.slow else ""), tally, burst=True)
    ws.slow = False


async def _ws_flood(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """The app sleeps while more than --ws-max-queue messages arrive: the server stops reading, then
    resumes; every echo comes back, in order."""
    await ws.send(f"{WS_COMMAND}pause {rnd.randint(50, 300)}")
    sent = [_ws_message(rnd, big=False) for _ in range(rnd.randint(33, 100))]
    for data in sent:
        await _ws_send(ws, rnd, data)
    for i, data in enumerate(sent):
        await ws.expect(data, f"echo {i} of {len(sent)} sent while the app slept", tally)


async def _ws_duplex(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """Ask for a burst and send messages while it comes: the burst, then their echoes, in order."""
    count, size = rnd.choice(((100, 1000), (30, 65536), (2, 1 << 20)))
    await ws.send(f"{WS_COMMAND}burst {count} {size} bytes")
    sent = [_ws_message(rnd) for _ in range(rnd.randint(1, 8))]
    for data in sent:
        await _ws_send(ws, rnd, data)
    for i in range(count):
        await ws.expect(burst_message(i, size, False), f"message {i} of a burst of {count} x {size} (duplex)",
                        tally, burst=True)
    for i, data in enumerate(sent):
        await ws.expect(data, f"echo {i} of {len(sent)} sent during a burst", tally)


async def _ws_close_mid_burst(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """Close while the app is sending a burst: what comes before the server's close frame is the
    burst in order, from where reading stopped; nothing after it."""
    count, size = rnd.choice(((2000, 100), (200, 65536)))
    ws.slow = rnd.random() < 0.5
    await ws.send(f"{WS_COMMAND}burst {count} {size} bytes")
    seen = rnd.randint(0, 20)
    for i in range(seen):
        await ws.expect(burst_message(i, size, False), f"message {i} of a burst of {count} x {size}", tally,
                        burst=True)
    got = await ws.close(1000, "")
    for i in range(seen, seen + ws.inbox.qsize()):
        text, data = ws.inbox.get_nowait()
        if text or i >= count or data != burst_message(i, size, False):
            raise WsFail(f"message {i} of a burst of {count} x {size}, before the close frame, is wrong")
        tally.messages += 1
    _check_close(got, (1000, ""), tally, ws)


async def _ws_client_close(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """The client closes (with a code and reason, or an empty close frame): the server echoes it."""
    code = rnd.choice((*CLOSE_CODES, None))
    reason = "" if code is None else rnd.choice(REASONS)
    await ws.send(f"{WS_COMMAND}expect {1005 if code is None else code} {reason}")
    _check_close(await ws.close(code, reason), (1005 if code is None else code, reason), tally, ws)


async def _ws_close_in_flight(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """Close right behind a few messages: the echoes that come before the server's close frame
    are the first ones, in order (the rest are dropped once the app is told of the close)."""
    sent = [_ws_message(rnd, big=False) for _ in range(rnd.randint(1, 10))]
    for data in sent:
        await _ws_send(ws, rnd, data)
    got = await ws.close(1000, "")
    for i in range(ws.inbox.qsize()):
        text, data = ws.inbox.get_nowait()
        if i >= len(sent) or data != sent[i] or text != isinstance(sent[i], str):
            raise WsFail(f"echo {i} of {len(sent)} before the close is wrong")
        tally.messages += 1
    _check_close(got, (1000, ""), tally, ws)


async def _ws_server_close(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """The app closes with a chosen code and reason: exactly those arrive."""
    code, reason = rnd.choice(CLOSE_CODES), rnd.choice(REASONS)
    await ws.send(f"{WS_COMMAND}close {code} {reason}")
    try:
        await ws.recv("close frame from the app")
    except WsClosed:
        pass
    else:
        raise WsFail("a message where the app's close frame should be")
    _check_close(await ws.closed_by_server(), (code, reason), tally, ws)


async def _ws_app_returns(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """The app returns without closing: the server closes with 1000."""
    await ws.send(f"{WS_COMMAND}return")
    try:
        await ws.recv("close frame from the server")
    except WsClosed:
        pass
    else:
        raise WsFail("a message where the server's close frame should be")
    _check_close(await ws.closed_by_server(), (1000, ""), tally, ws)


async def _ws_abandon(ws: WsConn, rnd: random.Random, tally: WsTally) -> None:
    """Leave without a close frame, mostly with a reset: the app must be told 1006, quietly."""
    await ws.send(f"{WS_COMMAND}expect 1006 ")
    how = rnd.choice(("now", "burst", "half-frame"))
    if how == "burst":  # the app is sending when the client leaves
        await ws.send(f"{WS_COMMAND}burst 50 65536 bytes")
        await ws.expect(burst_message(0, 65536, False), "message 0 of a burst", tally, burst=True)
    elif how == "half-frame":  # the server is inside a frame when the client leaves
        frame = _frame(rnd, BINARY, rnd.randbytes(200_000))
        ws.writer.write(frame[:rnd.randint(1, len(frame) - 1)])
        await ws._drain()
    ws._check_open()  # a close frame that came first (a reload's 1012) is counted as such
    ws.abort(reset=rnd.random() < 0.8)
    ws.history.append(f"abandon ({how})")


def _check_close(got: "tuple[int, str]", want: "tuple[int, str]", tally: WsTally, ws: WsConn) -> None:
    took = time.monotonic() - ws.close_started
    if took > tally.slowest_close:
        tally.slowest_close, tally.slowest_close_in = took, ws.history[-1]
    if got == want:
        return
    if got[0] == 1012:
        raise WsClosed(*got)  # a reload came first: counted as such (EOF already seen)
    raise WsFail(f"close {got[0]} {got[1]!r}, wanted {want[0]} {want[1]!r}")


WS_OPS = (_ws_echo, _ws_echo, _ws_echo, _ws_pipeline, _ws_ping, _ws_burst, _ws_burst, _ws_flood, _ws_duplex)
WS_ENDINGS = (_ws_client_close, _ws_client_close, _ws_close_in_flight, _ws_close_mid_burst, _ws_server_close,
              _ws_app_returns, _ws_abandon, _ws_abandon)


async def _ws_handshake(port: int, rnd: random.Random, query: str = "", offer: Optional[str] = None,
                        protocols: Optional[str] = None, early: bytes = b"", rcvbuf: int = 0
                        ) -> "tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes, dict[str, str], bytes]":
    """Send an opening handshake (and ``early`` bytes in the same write); return the response head
    (status line, fields) and its Sec-WebSocket-Key."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), WS_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    reader = _Reader(limit=1 << 16)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    key = base64.b64encode(rnd.randbytes(16))
    lines = [f"GET /ws{query} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"Upgrade: {rnd.choice(('websocket', 'WebSocket'))}",
             f"Connection: {rnd.choice(('Upgrade', 'keep-alive, Upgrade', 'upgrade'))}",
             f"Sec-WebSocket-Key: {key.decode()}", "Sec-WebSocket-Version: 13"]
    if offer is not None:
        lines.append(f"Sec-WebSocket-Extensions: {offer}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + early)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WS_TIMEOUT)
    except asyncio.TimeoutError:
        writer.transport.abort()
        raise WsFail(f"no handshake response within {WS_TIMEOUT:g} s") from None
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        writer.transport.abort()
        partial = exc.partial[:200] if isinstance(exc, asyncio.IncompleteReadError) else type(exc).__name__
        raise WsFail(f"connection closed before the handshake response: {partial!r}") from None
    status, *fields = head[:-4].split(b"\r\n")
    headers: dict[str, str] = {}
    for line in fields:
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name in headers and name not in ("set-cookie",):
            raise WsFail(f"{name} twice in the handshake response")
        headers[name] = value.strip()
    return reader, writer, status, headers, key


async def _ws_open(port: int, rnd: random.Random, tally: WsTally) -> "tuple[WsConn, Optional[str | bytes]]":
    """A checked opening handshake; maybe with a first message in the handshake's packet."""
    offer_name, offer = rnd.choice(DEFLATE_OFFERS)
    protocols = rnd.choice((None, "soak.v1", "chat, soak.v1", "chat"))
    early_message: Optional["str | bytes"] = None
    early = b""
    if rnd.random() < 0.25:  # a first frame right behind the handshake: the server keeps it
        early_message = _ws_message(rnd, big=False)
        payload = early_message.encode() if isinstance(early_message, str) else early_message
        early = _frame(rnd, TEXT if isinstance(early_message, str) else BINARY, payload)
    slow_socket = rnd.random() < 0.3
    reader, writer, status, headers, key = await _ws_handshake(
        port, rnd, offer=offer, protocols=protocols, early=early, rcvbuf=16384 if slow_socket else 0)
    label = f"ws [{offer_name}; protocols {protocols}]"
    try:
        if not status.startswith(b"HTTP/1.1 101 "):
            raise WsFail(f"handshake answered {status[:100]!r}")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        problems = []
        if headers.get("upgrade", "").lower() != "websocket":
            problems.append(f"Upgrade {headers.get('upgrade')!r}")
        if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            problems.append(f"Connection {headers.get('connection')!r}")
        if headers.get("sec-websocket-accept") != accept:
            problems.append(f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}, wanted {accept!r}")
        if headers.get("x-soak") != "1":
            problems.append("the app's x-soak header is missing")
        want_protocol = "soak.v1" if protocols and "soak.v1" in protocols else None
        if headers.get("sec-websocket-protocol") != want_protocol:
            problems.append(f"Sec-WebSocket-Protocol {headers.get('sec-websocket-protocol')!r}, "
                            f"wanted {want_protocol!r}")
        answer = headers.get("sec-websocket-extensions")
        if answer is not None and offer is None:
            problems.append(f"Sec-WebSocket-Extensions {answer!r} without an offer")
        if problems:
            raise WsFail("handshake response: " + "; ".join(problems))
        deflate = Deflate(offer, answer) if answer is not None and offer is not None else None
    except WsFail as exc:
        writer.transport.abort()
        raise WsFail(f"{label}: {exc}") from None
    tally.connections += 1
    tally.deflate += deflate is not None
    label = f"ws [{offer_name}: {deflate.label if deflate else 'no deflate'}; protocols {protocols}" + \
            (", small receive buffer]" if slow_socket else "]")
    return WsConn(reader, writer, rnd, deflate, label), early_message


async def _ws_denied(port: int, rnd: random.Random, tally: WsTally, how: str) -> None:
    """A handshake the app refuses: ``deny`` through websocket.http.response, ``reject`` by closing first."""
    reader, writer, status, headers, _ = await _ws_handshake(port, rnd, query=f"?{how}=1")
    try:
        if not status.startswith(b"HTTP/1.1 403 "):
            raise WsFail(f"ws {how}: handshake answered {status[:100]!r}, wanted 403")
        try:
            body = await asyncio.wait_for(reader.read(), WS_TIMEOUT)  # the server closes after it
        except asyncio.TimeoutError:
            raise WsFail(f"ws {how}: the connection stayed open after the 403") from None
        if how == "deny" and (body != DENIED or headers.get("content-length") != str(len(DENIED))):
            raise WsFail(f"ws deny: body {body[:100]!r}, wanted {DENIED!r}")
        if how == "reject" and len(body) != int(headers.get("content-length", -1)):
            raise WsFail(f"ws reject: {len(body)} body bytes, Content-Length {headers.get('content-length')}")
    finally:
        writer.transport.abort()
    tally.denied += 1


async def _ws_session(port: int, rnd: random.Random, until: float, tally: WsTally, reloads: bool,
                      label: "list[str]") -> None:
    roll = rnd.random()
    if roll < 0.04:
        label[0] = "ws deny"
        return await _ws_denied(port, rnd, tally, "deny" if roll < 0.02 else "reject")
    ws, early = await _ws_open(port, rnd, tally)
    label[0] = ws.label
    try:
        if early is not None:
            ws.history.append("message in the handshake's packet")
            await ws.expect(early, "echo of the message sent with the handshake", tally)
        for _ in range(rnd.randint(1, 12)):
            if time.monotonic() >= until:
                break
            op = rnd.choice(WS_OPS)
            ws.history.append(op.__name__[4:])
            await op(ws, rnd, tally)
        ending = rnd.choice(WS_ENDINGS)
        ws.history.append(ending.__name__[4:])
        await ending(ws, rnd, tally)
    except WsClosed as closed:
        if closed.code == 1012 and reloads:
            await ws.wait_eof()
            tally.restarts += 1
            return
        raise WsFail(f"unexpected close {closed.code} {closed.reason!r}") from None
    except WsFail as exc:
        raise WsFail(f"{exc}; after {', '.join(ws.history[-6:])}") from None
    finally:
        ws.abort()


async def _ws_client(port: int, seed: int, until: float, tally: WsTally, reloads: bool) -> None:
    rnd = random.Random(seed)
    while time.monotonic() < until:
        started = time.monotonic()
        label = ["ws"]
        try:
            await asyncio.wait_for(_ws_session(port, rnd, until, tally, reloads, label), WS_SESSION_TIMEOUT)
            continue
        except WsFail as exc:
            problem = str(exc) if str(exc).startswith("ws") else f"{label[0]}: {exc}"
        except asyncio.TimeoutError:
            problem = f"{label[0]}: the connection took over {WS_SESSION_TIMEOUT:g} s"
        except OSError as exc:
            problem = f"{label[0]}: {type(exc).__name__}: {exc}"
        tally.failures.append(f"{problem} ({time.monotonic() - started:.1f} s into the connection)")


def ws_clients(port: int, count: int, until: float, reloads: bool, out: Any) -> None:
    """The WebSocket clients, in a process of their own (so they do not slow the HTTP client
    threads down through the GIL); the tally goes back through ``out``."""
    tally = WsTally()

    async def run() -> None:
        await asyncio.gather(*(_ws_client(port, 1000 + i, until, tally, reloads) for i in range(count)))

    try:
        asyncio.run(run())
    except BaseException as exc:
        tally.failures.append(f"ws clients crashed: {exc!r}")
    out.put(tally)


# ---------------------------------------------------------------------------------------------
# HTTP clients, and the run.

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


def soak(mode: str, seconds: float, clients: int, pause: bool, extra: "list[str]" = [], hup: float = 0,
         ws_count: int = 4) -> "tuple[Tally, Optional[WsTally]]":
    """One mode; the WebSocket tally is None in WSGI modes (WSGI apps get no WebSockets)."""
    SERVER_LOG.clear()
    wsgi = mode.endswith("-wsgi")
    with_ws = not wsgi and ws_count > 0
    ws_tally: Optional[WsTally] = None
    if with_ws:
        # Server pings every second (clients answer them between everything else); a missed pong
        # is a 1011 close, which fails.
        extra = ["--ws-ping-interval", "1", "--ws-ping-timeout", "10", *extra]
    proc, port = start_server(mode, extra)
    tally = Tally()
    stop = threading.Event()
    until = time.monotonic() + seconds
    try:
        workers = [threading.Thread(target=client, args=(port, i, until, tally)) for i in range(clients)]
        if with_ws:
            # Reloads and worker recycling close WebSockets with 1012 (service restart): expected then.
            restarts = hup > 0 or any(arg.startswith("--max-requests") for arg in extra)
            context = multiprocessing.get_context("spawn")
            ws_out = context.Queue()
            ws_proc = context.Process(target=ws_clients, args=(port, ws_count, until, restarts, ws_out), daemon=True)
            ws_proc.start()
        helpers = [threading.Thread(target=pause_loop, args=(proc.pid, until, stop))] if pause else []
        if hup:
            helpers.append(threading.Thread(target=hup_loop, args=(proc.pid, hup, until, stop)))
        for t in workers + helpers:
            t.start()
        for t in workers:
            t.join(seconds + 2 * TIMEOUT)
        if with_ws:
            try:
                ws_tally = ws_out.get(timeout=max(0.0, until - time.monotonic()) + WS_SESSION_TIMEOUT + 10)
            except Exception:
                ws_tally = WsTally(failures=["ws clients: no tally from their process"])
            ws_proc.join(10)
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
    return tally, ws_tally


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per mode")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    parser.add_argument("--clients", type=int, default=8, help="HTTP clients (threads)")
    parser.add_argument("--ws-clients", type=int, default=4,
                        help="WebSocket clients (asyncio, in one process of their own) in the ASGI modes; 0: none")
    parser.add_argument("--no-pause", action="store_true", help="do not SIGSTOP/SIGCONT the server")
    parser.add_argument("--hup", type=float, default=0, metavar="SECONDS",
                        help="send SIGHUP (graceful reload) this often; use with --server-args '--workers 2'. "
                             "WebSockets closed with 1012 are then expected (counted, not failures)")
    parser.add_argument("--server-args", default="", help="more asgiserve arguments, e.g. '--workers 2 --loop asyncio'")
    args = parser.parse_args(argv)
    failed = False
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}")
        tally, ws = soak(mode, args.seconds, args.clients, not args.no_pause, shlex.split(args.server_args), args.hup,
                         args.ws_clients)
        line = f"{mode:15} {tally.ok:7} verified, {len(tally.failures)} failed"
        if ws is not None:
            line += (f"; ws {ws.connections} connections ({ws.deflate} deflate, {ws.denied} denied), "
                     f"{ws.messages} messages verified, {ws.restarts} closed 1012, {len(ws.failures)} failed"
                     f" (slowest close handshake {ws.slowest_close:.2f} s, {ws.slowest_close_in})")
        print(line, flush=True)
        for failure in tally.failures[:20] + (ws.failures[:20] if ws is not None else []):
            print("   ", failure)
        failed = failed or bool(tally.failures) or bool(ws is not None and ws.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
