"""Differential fuzzing of the connection core: HttpProtocol over httptools and over h11 must
write the same bytes back for the same input.

Each generated stream (tests/fuzz/strategies.py) is fed, split at hypothesis-chosen points, to
an ``HttpProtocol`` with a fake transport (no sockets, as tests/unit/http/test_protocol.py
does) and a tiny app that echoes what it saw (method, paths, version, headers, the whole body)
and, for WebSocket requests, accepts or denies. Then EOF. The bytes written back (status lines,
headers without Date, bodies, 100 Continue, WebSocket frames), the way the connection ended
(half-close, close, abort) and the app calls must be identical on both parsers; nothing may
escape as an exception, and no example may hang (watchdog).
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import Any, Callable

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from asgiserve.config import Config
from asgiserve.http.protocol import HttpProtocol
from asgiserve.server import Server, ServerState
from tests.fuzz.strategies import LONG, Stream, fuzz_settings, mixed_streams, pieces, splits, watchdog
from tests.fuzz.test_parser_diff import excuse, outcomes

pytestmark = pytest.mark.timeout(4 * 3600 if LONG else 120)


class FakeSocket:
    family = socket.AF_INET

    def setsockopt(self, *args: Any) -> None:
        pass


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.eof_written = False
        self.closed = False
        self.aborted = False
        self.reading = True
        self.late_writes = 0

    def write(self, data: bytes) -> None:
        if self.eof_written or self.closed:
            self.late_writes += 1  # a write after close is a core bug: counted and compared
            return
        self.out += data

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.eof_written

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000), "socket": FakeSocket()}
        return info.get(name, default)

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass


def make_app(calls: list[Any], ws_accept: bool) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen = (scope["type"], scope.get("method"), scope["path"], scope["raw_path"], scope["query_string"],
                scope["http_version"], scope["headers"])
        if scope["type"] == "websocket":
            calls.append(seen + (await receive(),))
            if ws_accept:
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": 1000})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                calls.append(seen + ("disconnect", body))
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        calls.append(seen + (body,))
        answer = repr(seen[1:]).encode() + b"|" + body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": answer})

    return app


# The server's answer to a ParseError, always the last bytes written before the close. Its
# body is the ParseError's reason, which is backend-specific (the corpus does not compare it
# either): its length and text are masked.
_ERROR_ANSWER = re.compile(
    rb"(HTTP/1\.1 (?:400|414|431|505) [^\r\n]*\r\n(?:[^\r\n]+\r\n)*?)content-length: \d+\r\n"
    rb"((?:[^\r\n]+\r\n)*\r\n)[^\n]*\n\Z"
)


def mask_reason(out: bytes) -> bytes:
    return _ERROR_ANSWER.sub(rb"\1content-length: *\r\n\2<reason>", out)


async def settle() -> None:
    for _ in range(12):
        await asyncio.sleep(0)


async def serve_stream(kind: str, raw: bytes, cuts: list[int], config: dict[str, int], ws: str,
                       ws_accept: bool) -> tuple[Any, ...]:
    calls: list[Any] = []
    app = make_app(calls, ws_accept)
    conf = Config(app=app, http=kind, proxy_headers=False, access_log=False, date_header=False, ws=ws, **config)
    loop = asyncio.get_running_loop()
    state = ServerState(Server(conf), conf, app, loop)
    proto = HttpProtocol(state)
    transport = FakeTransport()
    proto.connection_made(transport)
    fed = 0
    for piece in pieces(raw, cuts):
        await settle()
        if not transport.reading:  # as a real transport would: hold the input until resumed
            break
        proto.data_received(piece)
        fed += len(piece)
    await settle()
    if fed == len(raw) and not (transport.closed or transport.eof_written):
        proto.eof_received()
    await settle()
    tasks = [t for t in state.tasks if not t.done()]
    for task in tasks:
        task.cancel()
    await settle()
    return (mask_reason(bytes(transport.out)), transport.eof_written, transport.closed, transport.aborted,
            transport.late_writes, fed, calls)


def serve(kind: str, raw: bytes, cuts: list[int], config: dict[str, int], ws: str, ws_accept: bool) -> tuple[Any, ...]:
    return asyncio.run(serve_stream(kind, raw, cuts, config, ws, ws_accept))


@st.composite
def core_cases(draw: Callable[..., Any]) -> tuple[Stream, list[int], str, bool]:
    stream = draw(mixed_streams(max_requests=3))
    return stream, draw(splits(len(stream.raw))), draw(st.sampled_from(["none", "auto"])), draw(st.booleans())


@pytest.fixture(autouse=True)
def quiet_logs() -> Any:
    """The core logs every refused request; thousands of examples need not print them."""
    names = ["asgiserve.error", "asgiserve.access", "asgiserve"]
    levels = [logging.getLogger(n).level for n in names]
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    yield
    for name, level in zip(names, levels):
        logging.getLogger(name).setLevel(level)


@fuzz_settings(0.75)
@given(core_cases())
def test_core_answers_agree(case: tuple[Stream, list[int], str, bool]) -> None:
    stream, cuts, ws, ws_accept = case
    with watchdog():
        ours = {kind: serve(kind, stream.raw, cuts, stream.config, ws, ws_accept) for kind in ("httptools", "h11")}
    note(f"raw={stream.raw!r}\nconfig={stream.config} cuts={cuts} ws={ws} accept={ws_accept}")
    for kind, result in ours.items():
        note(f"{kind}: {result!r}")
    statuses = re.findall(rb"HTTP/1\.1 ([0-9]{3}) [A-Z]", ours["h11"][0])
    event(f"statuses: {b' '.join(statuses[:4]).decode()}{' ...' if len(statuses) > 4 else ''}")
    for kind, result in ours.items():
        assert result[4] == 0, f"{kind}: the core wrote after closing the connection"
    if ours["httptools"] != ours["h11"]:
        # A parser disagreement shows up here too: excuse only those already explained.
        upgrades = ws != "none"
        results = outcomes(stream.raw, [cuts], stream.config, upgrades)
        why = excuse(stream, upgrades, [cuts], results)
        if why and results[("httptools", 0)] != results[("h11", 0)]:
            event(why)
            return
    assert ours["httptools"] == ours["h11"], "the core answered differently on the two parsers"
