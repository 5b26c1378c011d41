"""Streaming through the WSGI bridge on the real server (both parsers): request bodies and
responses flow chunk by chunk with backpressure, disconnects stop the app's iterable, stalled
clients cannot starve the pool. Memory is checked in a separate server process by RSS."""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.support import RawClient, RunningServer

Serve = Callable[..., RunningServer]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1024 * 1024
BIG = int(os.environ.get("ASGISERVE_TEST_BIG_MB", "1024")) * MIB


def chunked_body(response_bytes: bytes) -> bytes:
    """Decode a complete chunked body."""
    out, rest = b"", response_bytes
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return out
        out, rest = out + rest[:size], rest[size + 2 :]


def test_streamed_response_is_not_buffered(serve: Serve) -> None:
    """Chunk 2 is produced only after the client has received chunk 1: any buffering deadlocks."""
    first_seen = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first;"
        if not first_seen.wait(10):
            raise AssertionError("the client never received the first chunk")
        yield b""
        yield b"second"

    server = serve(app)
    with server.raw(timeout=10) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, _ = client.read_head()
        assert status == 200 and (b"transfer-encoding", b"chunked") in headers
        while b"first;" not in client.buffer:
            assert client._fill()
        first_seen.set()
        while not client.buffer.endswith(b"0\r\n\r\n"):
            assert client._fill()
        assert chunked_body(client.buffer) == b"first;second"


def test_full_duplex_request_and_response_streaming(serve: Serve) -> None:
    """The app answers each line of a chunked upload before the client sends the next one."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        for line in environ["wsgi.input"]:
            yield b"ack " + line

    server = serve(app)
    with server.raw(timeout=10) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            line = b"line %d\n" % i
            client.send(b"%x\r\n%s\r\n" % (len(line), line))
            if i == 0:
                status, _, _ = client.read_head()
                assert status == 200
            while b"ack " + line not in client.buffer:
                assert client._fill()
        client.send(b"0\r\n\r\n")
        while not client.buffer.endswith(b"0\r\n\r\n"):
            assert client._fill()
        assert chunked_body(client.buffer) == b"ack line 0\nack line 1\nack line 2\n"


def test_client_disconnect_stops_the_iterable_and_closes_it_once(serve: Serve) -> None:
    state = {"pulled": 0, "closed": 0}
    closed = threading.Event()

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            while True:
                state["pulled"] += 1
                yield b"z" * 65536

        def close(self) -> None:
            state["closed"] += 1
            closed.set()

    def app(environ: dict[str, Any], start_response: Any) -> Endless:
        start_response("200 OK", [])
        return Endless()

    server = serve(app)
    client = server.raw(timeout=10)
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    client.read_head()
    for _ in range(10):
        client._fill()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # RST: the client is gone
    assert closed.wait(10), "close() was not called after the client disconnected"
    pulled = state["pulled"]
    # close() means the bridge let go of the iterable: a response to nobody is not produced
    # to its end. A short window lets a buggy bridge show itself; no timing is asserted.
    time.sleep(0.05)
    assert state["pulled"] == pulled and state["closed"] == 1
    assert pulled < 10_000  # far less than "forever"


def test_stalled_downloads_cannot_starve_the_pool(serve: Serve) -> None:
    """As many clients as threads start a huge download and stop reading: the stall timeout
    frees the threads and closes those connections, and a new request is answered."""
    threads = 2

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/huge":
            block = b"h" * 65536
            while True:
                yield block
        yield b"small"

    server = serve(app, threads=threads, wsgi_send_timeout=0.5)
    stalled: list[RawClient] = []
    for _ in range(threads):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        client = RawClient(sock)
        client.send(b"GET /huge HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_head()[0] == 200
        stalled.append(client)  # and never read again
    with server.raw(timeout=15) as fresh:
        fresh.send(b"GET /small HTTP/1.1\r\nHost: h\r\n\r\n")
        response = fresh.read_response()
        assert response.status == 200 and response.body == b"small"
    for client in stalled:
        data = client.read_until_close()  # the server closed it: EOF (or reset), not a hang
        assert not data.endswith(b"0\r\n\r\n")
        client.close()
    assert "did not read the response" in server.logs.text()


def test_more_requests_than_threads_all_answered(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        time.sleep(0.01)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    server = serve(app, threads=2)
    results: dict[int, bytes] = {}

    def fetch(i: int) -> None:
        results[i] = httpx.get(f"{server.url}/{i}", timeout=20).content

    workers = [threading.Thread(target=fetch, args=(i,)) for i in range(12)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert results == {i: b"/%d" % i for i in range(12)}


# --------------------------- memory, in a separate process ---------------------------

SERVER_SCRIPT = r"""
import asyncio, os, sys
from asgiserve.config import Config
from asgiserve.server import Server
from asgiserve.loop import new_event_loop

produced = 0
BLOCK = b"x" * 65536

def app(environ, start_response):
    global produced
    path = environ["PATH_INFO"]
    if path == "/upload":
        stream, total = environ["wsgi.input"], 0
        while True:
            block = stream.read(65536)
            if not block:
                break
            total += len(block)
        start_response("200 OK", [])
        return [str(total).encode()]
    if path == "/download":
        size = int(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Length", str(size))])
        def gen():
            global produced
            left = size
            while left > 0:
                n = min(left, len(BLOCK))
                produced += n
                left -= n
                yield BLOCK if n == len(BLOCK) else BLOCK[:n]
        return gen()
    start_response("200 OK", [])
    return [str(produced).encode()]

async def orphan_guard():
    parent = os.getppid()
    while os.getppid() == parent:  # the test process died (e.g. a timeout): do not linger
        await asyncio.sleep(0.5)
    os._exit(1)

async def main():
    asyncio.ensure_future(orphan_guard())
    config = Config(app=app, host="127.0.0.1", port=0, http=sys.argv[1], lifespan="on",
                    access_log=False, log_level="warning", threads=4, limit_request_body=0)
    server = Server(config)
    task = asyncio.ensure_future(server.serve())
    started = asyncio.ensure_future(server.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        print("failed", flush=True)
        await task  # raises the startup error
    print(server.sockets[0].getsockname()[1], flush=True)
    await task

new_event_loop("auto").run_until_complete(main())
"""


class ServerProcess:
    def __init__(self, http_impl: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, http_impl],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"server process did not start: {line!r}")
        self.port = int(line)
        psutil = pytest.importorskip("psutil")
        self.ps = psutil.Process(self.proc.pid)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def get(self, path: str) -> bytes:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=30).content

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def server_process(http_impl: str) -> Iterator[ServerProcess]:
    pytest.importorskip("psutil")
    proc = ServerProcess(http_impl)
    try:
        # Warm up every path once so the baseline includes code and buffers in steady use.
        upload(proc, 8 * MIB)
        assert download(proc, 8 * MIB, check=lambda: None) == 8 * MIB
        yield proc
    finally:
        proc.stop()


def upload(proc: ServerProcess, size: int, sample: Callable[[], None] = lambda: None) -> int:
    with socket.create_connection(("127.0.0.1", proc.port), timeout=30) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"u" * MIB
        for i in range(size // MIB):
            sock.sendall(piece)
            if i % 16 == 0:
                sample()
        client = RawClient(sock)
        response = client.read_response()
        assert response.status == 200
        return int(response.body)


def download(proc: ServerProcess, size: int, check: Callable[[], None]) -> int:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", proc.port))
    with sock:
        client = RawClient(sock)
        client.send(b"GET /download?%d HTTP/1.1\r\nHost: h\r\n\r\n" % size)
        status, headers, _ = client.read_head()
        assert status == 200
        got, n = len(client.buffer), 0
        client.buffer = b""
        while got < size:
            data = sock.recv(MIB)
            if not data:
                break
            got += len(data)
            n += 1
            if n % 256 == 0:
                check()
        return got


def test_big_upload_keeps_server_memory_flat(server_process: ServerProcess) -> None:
    base = server_process.rss()
    peak = [base]
    total = upload(server_process, BIG, sample=lambda: peak.append(server_process.rss()))
    assert total == BIG
    growth = max(peak) - base
    assert growth < 48 * MIB, f"server RSS grew by {growth // MIB} MiB during a {BIG // MIB} MiB upload"


def test_big_download_to_a_slow_client_keeps_server_memory_flat(server_process: ServerProcess) -> None:
    base = server_process.rss()
    peak = [base]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server_process.port))
    with sock:
        client = RawClient(sock)
        client.send(b"GET /download?%d HTTP/1.1\r\nHost: h\r\n\r\n" % BIG)
        assert client.read_head()[0] == 200
        # The client stops reading. The generator must stop too, a few buffers ahead.
        produced, stable = -1, 0
        for _ in range(200):
            now = int(server_process.get("/progress"))
            stable = stable + 1 if now == produced else 0
            produced = now
            if stable >= 3:
                break
            time.sleep(0.02)
        assert stable >= 3, "the generator kept running while the client was not reading"
        assert produced < 32 * MIB, f"{produced // MIB} MiB produced for a client that read nothing"
        peak.append(server_process.rss())
        # Now read it all, slowly enough to matter, fast enough for a test.
        got = len(client.buffer)
        while got < BIG:
            data = sock.recv(MIB)
            if not data:
                break
            got += len(data)
            if got % (16 * MIB) < MIB:
                peak.append(server_process.rss())
        assert got == BIG
    growth = max(peak) - base
    assert growth < 48 * MIB, f"server RSS grew by {growth // MIB} MiB during a {BIG // MIB} MiB download"


def test_server_shutdown_aborts_a_stuck_stream_and_closes_it_once(serve: Serve) -> None:
    """A client that never reads keeps a streaming response in flight past the graceful
    timeout: the server cancels it, the bridge frees the thread and calls close() once."""
    state = {"closed": 0}
    closed = threading.Event()

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            block = b"s" * 65536
            while True:
                yield block

        def close(self) -> None:
            state["closed"] += 1
            closed.set()

    def app(environ: dict[str, Any], start_response: Any) -> Endless:
        start_response("200 OK", [])
        return Endless()

    server = serve(app, timeout_graceful_shutdown=0.3, wsgi_send_timeout=60)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    with RawClient(sock) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_head()[0] == 200
        server.stop()  # graceful shutdown times out on the stuck response, then cancels it
        assert closed.wait(10)
    assert state["closed"] == 1
