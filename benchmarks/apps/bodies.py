"""Large bodies. ``GET /download/1m`` and ``/download/100m`` stream 64 KiB chunks with a Content-Length;
``POST /upload`` echoes the request body back chunk by chunk as it arrives (Content-Length copied), so a
server that streams keeps its memory flat and one that buffers shows it in peak RSS.
ASGI ``app`` and WSGI ``wsgi_app`` do the same thing.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from ._lifespan import lifespan

CHUNK = b"x" * 65536
SIZES = {"/download/1m": 1 << 20, "/download/100m": 100 << 20}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return await lifespan(receive, send)
    path = scope["path"]
    if path in SIZES:
        size = SIZES[path]
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(size // len(CHUNK) - 1):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": CHUNK})
        return
    length = dict(scope["headers"]).get(b"content-length", b"0")
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", length)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        more = message.get("more_body", False)
        await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": more})


def _stream(size: int) -> Iterator[bytes]:
    for _ in range(size // len(CHUNK)):
        yield CHUNK


def _echo(stream: Any, remaining: int) -> Iterator[bytes]:
    while remaining > 0:
        chunk = stream.read(min(65536, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path in SIZES:
        size = SIZES[path]
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return _stream(size)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(length))])
    return _echo(environ["wsgi.input"], length)
