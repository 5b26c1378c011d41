"""start_response, the write() callable, error handling and close(), through fake receive/send."""
from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any, Iterator

import pytest

from asgiserve.wsgi import WSGIMiddleware
from asgiserve.wsgi.response import encode_headers, parse_status

from .helpers import FakeServer, call, http_scope


def hello(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Multi", "a"), ("X-Multi", "b")])
    return [b"Hello, world"]


async def test_small_response_is_one_start_and_one_final_body() -> None:
    server = await call(hello)
    assert server.sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"Content-Type", b"text/plain"), (b"X-Multi", b"a"), (b"X-Multi", b"b")],
        },
        {"type": "http.response.body", "body": b"Hello, world", "more_body": False},
    ]


@contextlib.contextmanager
def counted_hops() -> Iterator[list[int]]:
    """Counts the thread -> loop wake-ups (call_soon_threadsafe) made inside the block."""
    loop = asyncio.get_running_loop()
    hops = [0]
    original = loop.call_soon_threadsafe

    def counting(*args: Any, **kw: Any) -> Any:
        hops[0] += 1
        return original(*args, **kw)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        yield hops
    finally:
        del loop.call_soon_threadsafe


async def test_small_request_and_response_take_one_thread_to_loop_hop() -> None:
    mw = WSGIMiddleware(hello)
    with counted_hops() as hops:
        await call(mw)
    assert hops == [1]

    # A POST whose body came with the head: the app reads it without another hop.
    def echo(environ: Any, start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    body = b"a=1&b=2"
    scope = http_scope(method="POST", headers=[(b"content-length", b"%d" % len(body))])
    with counted_hops() as hops:
        server = await call(echo, scope, FakeServer([body]))
    assert server.body == body and hops == [1]
    mw.close(5)


class Closing:
    """Like werkzeug's ClosingIterator around Flask's body: not a list, has close()."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.closed = iter(chunks), 0

    def __iter__(self) -> "Closing":
        return self

    def __next__(self) -> bytes:
        return next(self.chunks)

    def close(self) -> None:
        self.closed += 1


async def test_iterable_whose_first_chunk_is_the_declared_length_goes_out_in_one_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Flask and Django answer with an iterable (not a list) and a Content-Length: one hop, one
    final body message, and no stall timer or disconnect listener needed."""
    bodies: list[Closing] = []

    def app(environ: Any, start_response: Any) -> Closing:
        start_response("200 OK", [("Content-Length", "5")])
        bodies.append(Closing([b"hello"]))
        return bodies[-1]

    with counted_hops() as hops:
        server = await call(app)
    assert hops == [1]
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.body"]
    assert server.sent[1] == {"type": "http.response.body", "body": b"hello", "more_body": False}
    assert bodies[0].closed == 1

    # More than it declared: the response already went whole; the extra is an error in the log.
    def liar(environ: Any, start_response: Any) -> Closing:
        start_response("200 OK", [("Content-Length", "5")])
        bodies.append(Closing([b"hello", b"extra"]))
        return bodies[-1]

    with caplog.at_level("ERROR", logger="asgiserve.error"):
        server = await call(liar)
    assert server.body == b"hello" and server.complete and bodies[-1].closed == 1
    assert "more than its Content-Length" in caplog.text

    # A first chunk shorter than the declared length is streamed as before.
    def partial(environ: Any, start_response: Any) -> Closing:
        start_response("200 OK", [("Content-Length", "10")])
        return Closing([b"hello", b"world"])

    server = await call(partial)
    assert server.body == b"helloworld" and server.complete


async def test_multi_chunk_list_and_generator() -> None:
    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        yield b""
        yield bytearray(b"b")
        yield memoryview(b"c")

    server = await call(app)
    assert server.body == b"abc" and server.complete
    server = await call(lambda e, s: (s("201 Created", []), [b"x", b"", b"y"])[1])
    assert server.status == 201 and server.body == b"xy"


async def test_empty_body_still_sends_headers() -> None:
    server = await call(lambda e, s: (s("204 No Content", [("X-A", "1")]), [])[1])
    assert server.status == 204 and server.headers[b"x-a"] == b"1" and server.body == b"" and server.complete


async def test_write_callable_then_iterable_in_order() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"one ")
        write(b"")
        write(b"two ")
        return [b"three"]

    server = await call(app)
    assert server.body == b"one two three" and server.complete


async def test_headers_wait_for_first_nonempty_chunk_so_error_page_can_replace_them() -> None:
    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("X-Ok", "1")])
        try:
            yield b""
            raise ValueError("boom")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Error", "1")], sys.exc_info())
            yield b"sorry"

    server = await call(app)
    assert server.status == 503
    assert b"x-ok" not in server.headers and server.headers[b"x-error"] == b"1"
    assert server.body == b"sorry"


async def test_exc_info_after_headers_sent_reraises_and_connection_is_dropped() -> None:
    seen: list[BaseException] = []

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError as exc:
                seen.append(exc)
                raise

    server = FakeServer()
    with pytest.raises(KeyError):
        await call(app, server=server)
    assert len(seen) == 1
    assert server.sent[0]["status"] == 200 and server.body == b"partial" and not server.complete


async def test_second_start_response_without_exc_info_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b"x"]

    server = await call(app)
    assert server.status == 500 and server.body == b"Internal Server Error"
    assert "second time" in caplog.text


@pytest.mark.parametrize("result", [[b"body"], [], iter([b"x"])])
async def test_never_calling_start_response_is_a_500(result: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = await call(lambda e, s: result)
    assert server.status == 500 and server.complete
    assert "start_response" in caplog.text


@pytest.mark.parametrize(
    "status, headers",
    [
        ("OK", []),
        (200, []),
        (b"200 OK", []),
        ("99 Too Small", []),
        ("2000 Huge", []),
        ("101 Switching Protocols", []),
        ("200 OK\r\nX-Injected: 1", []),
        ("200 OK", [("X-Bad", "a\r\nX-Injected: 1")]),
        ("200 OK", [("X-Bad", "nul\x00")]),
        ("200 OK", [("Bad Name", "x")]),
        ("200 OK", [("X-Ok:", "x")]),
        ("200 OK", [(b"X-Bytes", "x")]),
        ("200 OK", [("X-Bytes", b"x")]),
        ("200 OK", [("X-Uni", "\u2603")]),
        ("200 OK", (("X-Tuple-List", "x"),)),
        ("200 OK", [["X-List-Item", "x"]]),
        ("200 OK", [("X-Three", "x", "y")]),
        ("200 OK", {"X-Dict": "x"}),
    ],
)
async def test_invalid_status_or_headers_are_a_500_never_on_the_wire(
    status: Any, headers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response(status, headers)
        return [b"secret"]

    server = await call(app)
    assert server.status == 500
    wire = repr(server.sent)
    assert "Injected" not in wire and "secret" not in wire
    assert "Exception in WSGI application" in caplog.text


def test_status_and_header_parsing() -> None:
    assert parse_status("200 OK") == 200
    assert parse_status("404") == 404
    assert parse_status("599 Custom reason with spaces \xe9") == 599
    assert encode_headers([("Set-Cookie", "a=\xe9")]) == [(b"Set-Cookie", b"a=\xe9")]


async def test_non_bytes_chunk_is_a_500() -> None:
    server = await call(lambda e, s: (s("200 OK", []), ["text, not bytes"])[1])
    assert server.status == 500


async def test_app_raising_before_start_response_is_a_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        raise RuntimeError("kaboom")

    server = await call(app)
    assert server.status == 500 and server.body == b"Internal Server Error" and server.complete
    assert "kaboom" in caplog.text or any("kaboom" in str(r.exc_info) for r in caplog.records)


class Tracked:
    """A response iterable counting close() calls; optionally raising or blocking."""

    def __init__(self, chunks: Iterator[bytes], close_raises: bool = False) -> None:
        self.chunks = chunks
        self.closed = 0
        self.closed_event = threading.Event()
        self.pulled = 0
        self.close_raises = close_raises

    def __iter__(self) -> "Tracked":
        return self

    def __next__(self) -> bytes:
        self.pulled += 1
        return next(self.chunks)

    def close(self) -> None:
        self.closed += 1
        self.closed_event.set()
        if self.close_raises:
            raise OSError("close failed")


def tracked_app(body: Tracked, status: str = "200 OK") -> Any:
    def app(environ: Any, start_response: Any) -> Tracked:
        start_response(status, [])
        return body

    return app


async def test_close_called_once_on_normal_end_before_the_response_completes() -> None:
    body = Tracked(iter([b"a", b"b"]))
    order: list[str] = []

    async def on_send(message: dict[str, Any]) -> None:
        if not message.get("more_body", True):
            order.append("final send, closed=%d" % body.closed)

    await call(tracked_app(body), server=FakeServer(on_send=on_send))
    assert body.closed == 1 and order == ["final send, closed=1"]


async def test_close_called_once_on_error_mid_stream() -> None:
    def gen() -> Iterator[bytes]:
        yield b"first"
        raise ValueError("mid-stream")

    body = Tracked(gen())
    with pytest.raises(ValueError):
        await call(tracked_app(body))
    assert body.closed == 1


async def test_close_called_once_on_error_before_first_chunk() -> None:
    def gen() -> Iterator[bytes]:
        raise ValueError("early")
        yield b""  # pragma: no cover

    body = Tracked(gen())
    server = await call(tracked_app(body))
    assert server.status == 500 and body.closed == 1


async def test_close_raising_after_complete_body_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    body = Tracked(iter([b"all"]), close_raises=True)
    server = await call(tracked_app(body))
    assert server.body == b"all" and server.complete and body.closed == 1
    assert "close()" in caplog.text


@pytest.mark.parametrize("raise_after_disconnect", [True, False], ids=["send-raises", "send-dropped"])
async def test_client_disconnect_stops_pulling_and_closes_once(raise_after_disconnect: bool) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 1024

    body = Tracked(endless())
    server: FakeServer

    async def on_send(message: dict[str, Any]) -> None:
        if len(server.sent) == 3:
            server.disconnect()

    server = FakeServer(on_send=on_send, raise_after_disconnect=raise_after_disconnect)
    mw = WSGIMiddleware(tracked_app(body), buffer_size=16 * 1024)
    try:
        await asyncio.wait_for(mw(http_scope(), server.receive, server.send), 10)
    except OSError:
        pass
    assert await asyncio.to_thread(body.closed_event.wait, 5)
    pulled = body.pulled
    await asyncio.sleep(0.05)
    assert body.pulled == pulled < 200  # stopped at once, not after the whole (infinite) body
    assert body.closed == 1
    mw.close(5)


async def test_close_called_once_when_the_request_is_cancelled() -> None:
    started = threading.Event()
    release = threading.Event()

    def gen() -> Iterator[bytes]:
        yield b"first"
        started.set()
        release.wait(5)
        yield b"second"
        yield b"third"

    body = Tracked(gen())
    mw = WSGIMiddleware(tracked_app(body))
    server = FakeServer()
    task = asyncio.ensure_future(mw(http_scope(), server.receive, server.send))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await asyncio.to_thread(body.closed_event.wait, 5)
    assert body.closed == 1 and body.pulled <= 2
    assert mw.close(5)
    assert mw.stats["busy"] == 0


async def test_a_request_leaves_no_reference_cycle_behind() -> None:
    """Each request's objects are freed by reference counting, not left to the cyclic GC:
    a cycle through the exchange (write(), wsgi.input's fetch) made every request's scope,
    environ, cycle and task garbage for the collector, ~10% of a WSGI request's CPU."""
    import gc

    mw = WSGIMiddleware(hello, threads=2)
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            server = await call(mw)
            assert server.body == b"Hello, world"
        del server
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        mw.close(5)
    assert "Exchange" not in left and "InputStream" not in left


def test_header_cache_checks_what_it_returns() -> None:
    # A header seen before comes from the cache; a bad one is still refused each time.
    assert encode_headers([("X-A", "1")]) == encode_headers([("X-A", "1")]) == [(b"X-A", b"1")]
    for _ in range(2):
        with pytest.raises(ValueError):
            encode_headers([("X-A", "1\r\nX-Evil: 1")])
    with pytest.raises(TypeError):
        encode_headers([("X-A", ["unhashable"])])
