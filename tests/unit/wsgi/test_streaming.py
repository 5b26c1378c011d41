"""Streaming both ways: backpressure, stall timeouts, request bodies, file_wrapper, contextvars."""
from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import os
import tempfile
import threading
import time
from typing import Any, Iterator

import pytest

from asgiserve.wsgi import ClientStalled, WSGIMiddleware, bridge

from .helpers import FakeServer, call, http_scope

CHUNK = 16 * 1024


async def test_response_backpressure_bounds_what_the_thread_runs_ahead() -> None:
    pulled = 0

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        nonlocal pulled
        start_response("200 OK", [])
        for _ in range(1000):  # 16 MB in all
            pulled += 1
            yield b"x" * CHUNK

    gate = asyncio.Event()

    async def on_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("more_body"):
            await gate.wait()  # a client that does not read

    server = FakeServer(on_send=on_send)
    mw = WSGIMiddleware(app, buffer_size=64 * 1024)
    task = asyncio.ensure_future(mw(http_scope(), server.receive, server.send))
    for _ in range(50):
        await asyncio.sleep(0.01)
    stalled_at = pulled
    # buffer_size ahead in the queue, plus the batch the loop holds, plus one chunk in hand
    assert stalled_at <= 2 * (64 * 1024) // CHUNK + 3
    gate.set()
    await asyncio.wait_for(task, 10)
    assert pulled == 1000 and len(server.body) == 1000 * CHUNK and server.complete
    mw.close(5)


@pytest.mark.skipif(bridge.__file__.endswith(".so"), reason="compiled: Exchange._take is called directly, not patchable")
async def test_chunks_posted_right_after_the_loop_found_none_are_sent_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread may post in the instant after the loop's take found nothing (seen under load:
    that batch was then sent twice, a duplicated body chunk or a second http.response.start)."""
    resume, second_sent = threading.Event(), threading.Event()

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])  # no Content-Length: nothing downstream would catch a repeat
        yield b"first,"
        resume.wait(5)
        yield b"second,"
        second_sent.wait(5)  # the loop goes back for more while the thread holds the rest
        yield b"third"

    async def on_send(message: dict[str, Any]) -> None:
        if message.get("body") == b"second,":
            second_sent.set()

    server = FakeServer(on_send=on_send)
    take = bridge.Exchange._take
    armed = True

    def take_then_let_the_thread_post(self: Any) -> Any:
        nonlocal armed
        events = take(self)
        if not events and armed and server.sent:
            armed = False  # once, after the first chunk went out: let the thread post now
            resume.set()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with self.lock:
                    if self.events:
                        break
                time.sleep(0.001)
        return events

    monkeypatch.setattr(bridge.Exchange, "_take", take_then_let_the_thread_post)
    await call(app, server=server)
    assert not armed, "the interleaving under test did not happen"
    assert server.status == 200 and server.complete
    assert server.body == b"first,second,third"
    assert [m["type"] for m in server.sent].count("http.response.start") == 1


async def test_send_stall_timeout_frees_the_thread_and_raises(caplog: pytest.LogCaptureFixture) -> None:
    closed = threading.Event()

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            while True:
                yield b"y" * CHUNK

        def close(self) -> None:
            closed.set()

    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])
        return Endless() if environ["PATH_INFO"] == "/huge" else [b"small"]

    async def on_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # never reads again

    mw = WSGIMiddleware(app, threads=1, send_timeout=0.2)
    server = FakeServer(on_send=on_send)
    with pytest.raises(ClientStalled) as info:
        await asyncio.wait_for(mw(http_scope("/huge"), server.receive, server.send), 10)
    assert isinstance(info.value, OSError) and isinstance(info.value, TimeoutError)
    assert await asyncio.to_thread(closed.wait, 5)
    # The only thread is free again: the next request is served.
    assert (await call(mw)).body == b"small"
    mw.close(5)


async def test_send_stall_timeout_does_not_fire_for_a_slow_but_moving_client() -> None:
    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        for _ in range(12):
            yield b"z" * CHUNK

    async def on_send(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.03)  # each send is slowish, none stalls past the timeout

    server = await call(app, server=FakeServer(on_send=on_send), send_timeout=0.15, buffer_size=CHUNK)
    assert len(server.body) == 12 * CHUNK and server.complete


async def test_request_body_streamed_in_chunks() -> None:
    chunks = [b"a" * 1000, b"b" * 1000, b"c" * 1000, b"d" * 7]
    seen: list[int] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        total = 0
        while True:
            data = stream.read(1500)
            if not data:
                break
            seen.append(len(data))
            total += len(data)
        start_response("200 OK", [])
        return [str(total).encode()]

    headers = [(b"transfer-encoding", b"chunked")]
    server = await call(app, http_scope(method="POST", headers=headers), FakeServer(chunks))
    assert server.body == b"3007" and seen == [1500, 1500, 7]
    assert server.receive_calls == 4


async def test_expect_100_continue_body_is_not_requested_until_the_app_reads() -> None:
    headers = [(b"content-length", b"5"), (b"expect", b"100-continue")]

    def ignores_body(environ: Any, start_response: Any) -> list[bytes]:
        start_response("417 Expectation Failed", [])
        return [b""]

    server = await call(ignores_body, http_scope(method="PUT", headers=headers), FakeServer([b"hello"]))
    assert server.status == 417 and server.receive_calls == 0

    def reads(environ: Any, start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    server = await call(reads, http_scope(method="PUT", headers=headers), FakeServer([b"hello"]))
    assert server.body == b"hello" and server.receive_calls == 1


async def test_disconnect_mid_upload_raises_oserror_in_the_app(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            errors.append(exc)
            raise
        start_response("200 OK", [])  # pragma: no cover
        return [b"truncated body accepted?!"]  # pragma: no cover

    server = FakeServer([b"part", b"more"])
    server.messages[-1]["more_body"] = True  # the upload never finishes...

    async def drop() -> None:
        while server.messages:
            await asyncio.sleep(0.01)
        server.disconnect()  # ...the client goes away instead

    dropper = asyncio.ensure_future(drop())
    scope = http_scope(method="POST", headers=[(b"content-length", b"100000")])
    with pytest.raises(OSError):  # the server's own "client gone" error: it logs that quietly
        await call(app, scope, server)
    await dropper
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    assert server.sent == []
    assert "Exception in WSGI application" not in caplog.text  # a client leaving is not an app error


async def test_receive_stall_timeout_raises_in_the_app() -> None:
    errors: list[BaseException] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            errors.append(exc)
            start_response("408 Request Timeout", [])
            return [b"too slow"]
        return []  # pragma: no cover

    server = FakeServer([b"first", b"never"])
    server.messages[-1]["more_body"] = True
    server.messages.pop()  # after the first chunk nothing more arrives
    server.messages[0]["more_body"] = True
    scope = http_scope(method="POST", headers=[(b"content-length", b"1000")])
    server = await call(app, scope, server, receive_timeout=0.2)
    assert server.status == 408 and isinstance(errors[0], ClientStalled)


async def test_contextvars_copied_in_and_never_leak_between_requests() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(var.get())
        var.set("set by the app")
        start_response("200 OK", [])
        return [b""]

    mw = WSGIMiddleware(app, threads=1)
    var.set("from the server task")
    await call(mw)
    await call(mw)
    assert seen == ["from the server task", "from the server task"]
    assert var.get() == "from the server task"
    mw.close(5)


@pytest.fixture
def data_file() -> Iterator[str]:
    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(200_000))
    yield path
    os.unlink(path)


def file_app(path: str, length: bool = True) -> Any:
    def app(environ: Any, start_response: Any) -> Any:
        f = open(path, "rb")
        headers = [("Content-Length", str(os.path.getsize(path)))] if length else []
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)

    return app


async def test_file_wrapper_uses_zerocopysend_when_offered(data_file: str) -> None:
    files: list[Any] = []

    async def on_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.zerocopysend":
            files.append(message["file"])
            assert not message["file"].closed
            assert message["count"] == 200_000

    scope = http_scope(extensions={"http.response.zerocopysend": {}})
    server = await call(file_app(data_file), scope, FakeServer(on_send=on_send))
    assert server.sent[1]["type"] == "http.response.zerocopysend"
    assert len(files) == 1 and files[0].closed  # closed once the server is done with it


async def test_file_wrapper_without_extension_streams_blocks(data_file: str) -> None:
    server = await call(file_app(data_file, length=False), http_scope())
    with open(data_file, "rb") as f:
        assert server.body == f.read()
    assert all(len(m.get("body", b"")) <= 64 * 1024 for m in server.sent[1:])


async def test_file_wrapper_without_fileno_and_head(data_file: str) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"))

    scope = http_scope(extensions={"http.response.zerocopysend": {}})
    assert (await call(app, scope)).body == b"in memory"
    scope = http_scope(method="HEAD", extensions={"http.response.zerocopysend": {}})
    server = await call(file_app(data_file), scope)
    assert server.body == b"" and server.complete


async def test_pool_saturation_is_observable(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    entered = threading.Event()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/block":
            entered.set()
            release.wait(5)
        start_response("200 OK", [])
        return [b"ok"]

    mw = WSGIMiddleware(app, threads=1)
    caplog.set_level(logging.DEBUG, logger="asgiserve.error")
    first = asyncio.ensure_future(call(mw, http_scope("/block")))
    assert await asyncio.to_thread(entered.wait, 5)
    second = asyncio.ensure_future(call(mw, http_scope("/fast")))
    for _ in range(500):  # until the second request sits in the queue
        if mw.stats["queued"]:
            break
        await asyncio.sleep(0.01)
    stats = mw.stats
    assert stats["busy"] == 1 and stats["queued"] == 1 and stats["threads"] == 1
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert mw.close(5)  # joins the thread, so its bookkeeping for the last job is done
    stats = mw.stats
    assert stats["waited"] == 1 and stats["total_wait"] > 0 and stats["completed"] == 2
    assert "waited" in caplog.text


async def test_lifespan_completes_and_stops_the_pool() -> None:
    mw = WSGIMiddleware(lambda e, s: (s("200 OK", []), [b""])[1])
    await call(mw)
    assert mw.stats["threads"] == 1
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(mw({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send), 10)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert mw.stats["threads"] == 0
    assert (await call(mw)).status == 200  # still usable: a new generation of threads starts


async def test_websocket_is_rejected() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await WSGIMiddleware(lambda e, s: [])({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000}]
