"""Apps for ``benchmarks/soak.py``: every response is checkable by the client.

- ``GET /hello``: 13 bytes with a Content-Length.
- ``GET /download?n=N&cl=0|1``: N bytes of ``pattern(N)`` in 64 KiB pieces, with a
  Content-Length (cl=1) or without one (chunked).
- ``POST /echo``: the request body back, piece by piece as it arrives; with the request's
  Content-Length when it had one, chunked otherwise.
- ``POST /ignore``: ``ok`` without reading the body (the server must drop it and stay usable).

``app`` is ASGI 3, ``wsgi_app`` the same in WSGI.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator
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


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
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
