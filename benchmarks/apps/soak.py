"""Apps for ``benchmarks/soak.py``: every response is checkable by the client.

- ``GET /hello``: 13 bytes with a Content-Length.
- ``GET /download?n=N&cl=0|1``: N bytes of ``pattern(N)`` in 64 KiB pieces, with a
  Content-Length (cl=1) or without one (chunked).
- ``POST /echo``: the request body back, piece by piece as it arrives; with the request's
  Content-Length when it had one, chunked otherwise.
- ``POST /ignore``: ``ok`` without reading the body (the server must drop it and stay usable).

``app`` is ASGI 3, ``wsgi_app`` the same in WSGI. ``app`` also takes WebSockets on ``/ws``
(WSGI apps get none):

- every text or binary message is echoed, except text messages that start with ``WS_COMMAND``
  (ESC), which are commands: ``burst N S text|bytes`` sends N messages of ``burst_message(i, S, ...)``;
  ``pause MS`` sleeps before receiving again (received messages queue up in the server);
  ``close CODE REASON`` closes with that code and reason; ``return`` returns without closing
  (the server closes with 1000); ``expect CODE REASON`` names the close the client is about to
  cause, checked when the disconnect comes (1012, a reload's restart close, always passes).
- ``?deny=1`` answers the handshake with a 403 (``DENIED``) through ``websocket.http.response``;
  ``?reject=1`` closes before accepting (the server answers 403).
- the accept picks the subprotocol ``soak.v1`` when offered and adds ``x-soak: 1``.

The app says what is wrong on stderr with ``[ERROR]``, which the soak counts as a failure.
"""
from __future__ import annotations

import asyncio
import struct
import sys
import zlib
from typing import Any, Callable, Iterator, Union
from urllib.parse import parse_qs

from ._lifespan import lifespan

PIECE = 64 * 1024
HELLO = b"Hello, world!"


def pattern(n: int) -> bytes:
    """N bytes that depend on N, so a body from another response (or a repeated piece) shows."""
    seed = bytes((n * 7 + i * 13) % 251 for i in range(251))
    return (seed * (n // 251 + 1))[:n]


def _download_args(query: str) -> tuple[int, bool]:
    args = parse_qs(query)
    return int(args.get("n", ["0"])[0]), args.get("cl", ["1"])[0] == "1"


WS_COMMAND = "\x1b"
DENIED = b"denied by the soak app"
_TEXT_CYCLE = "soak é€😀 ßø中文✓𝄞 "  # 1-, 2-, 3- and 4-byte UTF-8


def burst_message(index: int, size: int, text: bool) -> Union[bytes, str]:
    """Message ``index`` of a burst of ``size``-byte messages: a header (the index and the CRC32
    of the rest) then a pattern of its own, so a lost, repeated or reordered message shows.
    Text messages are cut to at most ``size`` bytes on a character boundary."""
    if text:
        start = index % len(_TEXT_CYCLE)
        cycle = _TEXT_CYCLE[start:] + _TEXT_CYCLE[:start]
        body = (cycle * (size // len(cycle.encode()) + 1)).encode()[:max(size - 16, 0)]
        head = b"%08x%08x" % (index & 0xFFFFFFFF, zlib.crc32(body))
        return (head + body)[:size].decode("utf-8", "ignore")
    seed = bytes((index * 31 + size * 7 + i * 13) % 251 for i in range(251))
    body = (seed * ((size - 8) // 251 + 1))[:max(size - 8, 0)]
    return (struct.pack(">II", index & 0xFFFFFFFF, zlib.crc32(body)) + body)[:size]


def _app_error(text: str) -> None:
    print(f"[ERROR] soak app: {text}", file=sys.stderr, flush=True)


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return _app_error(f"first WebSocket message is {message['type']!r}")
    query = parse_qs(scope["query_string"].decode())
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    if "deny" in query:
        headers = [(b"content-length", b"%d" % len(DENIED)), (b"content-type", b"text/plain")]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": DENIED})
        return
    if "reject" in query:
        await send({"type": "websocket.close"})
        return
    subprotocol = "soak.v1" if "soak.v1" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-soak", b"1")]})
    expect = None
    while True:
        message = await receive()
        mtype = message["type"]
        if mtype == "websocket.disconnect":
            code, reason = message.get("code", 1005), message.get("reason") or ""
            if expect is not None and code != 1012 and (code, reason) != expect:
                _app_error(f"disconnect {code} {reason!r}, the client announced {expect[0]} {expect[1]!r}")
            return
        if mtype != "websocket.receive":
            return _app_error(f"unexpected message {mtype!r}")
        text, data = message.get("text"), message.get("bytes")
        if (text is None) == (data is None):
            return _app_error(f"websocket.receive with text {text is not None} and bytes {data is not None}")
        if text is not None and text.startswith(WS_COMMAND):
            command, _, rest = text[1:].partition(" ")
            if command == "burst":
                n, size, kind = rest.split(" ")
                key = "text" if kind == "text" else "bytes"
                for i in range(int(n)):
                    await send({"type": "websocket.send", key: burst_message(i, int(size), kind == "text")})
            elif command == "pause":
                await asyncio.sleep(int(rest) / 1000)
            elif command == "close":
                close_code, _, close_reason = rest.partition(" ")
                await send({"type": "websocket.close", "code": int(close_code), "reason": close_reason})
                return
            elif command == "return":
                return
            elif command == "expect":
                expect_code, _, expect_reason = rest.partition(" ")
                expect = (int(expect_code), expect_reason)
            else:
                return _app_error(f"unknown command {text[1:60]!r}")
            continue
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": data})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    if scope["type"] != "http":
        return await lifespan(receive, send)
    path = scope["path"]
    if path == "/download":
        n, with_length = _download_args(scope["query_string"].decode())
        headers = [(b"content-length", b"%d" % n)] if with_length else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        data = pattern(n)
        for i in range(0, n, PIECE):
            await send({"type": "http.response.body", "body": data[i:i + PIECE], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/echo":
        length = dict(scope["headers"]).get(b"content-length")
        headers = [(b"content-length", length)] if length is not None else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            more = message.get("more_body", False)
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": more})
        return
    body = b"ok" if path == "/ignore" else HELLO
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _pieces(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), PIECE):
        yield data[i:i + PIECE]


def _echo(stream: Any) -> Iterator[bytes]:
    while True:
        piece = stream.read(PIECE)
        if not piece:
            return
        yield piece


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    path = environ.get("PATH_INFO", "/")
    if path == "/download":
        n, with_length = _download_args(environ.get("QUERY_STRING", ""))
        start_response("200 OK", [("Content-Length", str(n))] if with_length else [])
        return _pieces(pattern(n))
    if path == "/echo":
        length = environ.get("CONTENT_LENGTH")
        start_response("200 OK", [("Content-Length", length)] if length else [])
        return _echo(environ["wsgi.input"])
    body = b"ok" if path == "/ignore" else HELLO
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
