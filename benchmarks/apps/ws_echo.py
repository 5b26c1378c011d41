"""WebSocket echo app for the Autobahn|Testsuite run (``benchmarks/autobahn.py``).

Accepts every WebSocket connection and echoes each message back as it came: text as text, bytes as
bytes, until the client disconnects. Plain ASGI 3, so asgiserve and uvicorn serve the same app.
HTTP requests get a one-line 200 (handy for a manual check); lifespan is answered correctly.
"""
from __future__ import annotations

from typing import Any

from ._lifespan import lifespan

HTTP_BODY = b"WebSocket echo: connect with ws://\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        return await lifespan(receive, send)
    if kind == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(HTTP_BODY)).encode())]})
        await send({"type": "http.response.body", "body": HTTP_BODY})
        return
    if kind != "websocket":
        return
    while True:
        message = await receive()
        t = message["type"]
        if t == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif t == "websocket.receive":
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        elif t == "websocket.disconnect":
            return
