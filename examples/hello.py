"""The smallest useful ASGI 3 app, no framework: ``asgiserve examples.hello:app``.

GET /            -> "Hello, world!"
GET /?name=Ann   -> "Hello, Ann!"
POST /echo       -> the request body, streamed back as it arrives (chunked)
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return

    if scope["path"] == "/echo" and scope["method"] == "POST":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more_body = message.get("more_body", False)
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return

    if scope["path"] != "/":
        body = b"Not Found\n"
        status = 404
    else:
        name = parse_qs(scope["query_string"].decode("latin-1")).get("name", ["world"])[0]
        body = f"Hello, {name}!\n".encode("utf-8")
        status = 200
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
