"""WebSocket echo app of the benchmark harness (the ``ws-echo-*`` and ``ws-memory`` scenarios).

Plain ASGI 3, the same for every server: accept every WebSocket, echo each message back as it came
(text as text, bytes as bytes) until the client leaves. HTTP requests get a 13-byte 200 (the harness's
readiness probe and the idle keep-alive column of ``ws-memory``); lifespan is answered correctly.
"""
from __future__ import annotations

from typing import Any

from ._lifespan import lifespan

PLAINTEXT = b"Hello, world!"
TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"13")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "websocket":
        while True:
            message = await receive()
            t = message["type"]
            if t == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await send({"type": "websocket.send", "text": text})
                else:
                    await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
            elif t == "websocket.connect":
                await send({"type": "websocket.accept"})
            else:  # websocket.disconnect
                return
    elif kind == "http":
        await send({"type": "http.response.start", "status": 200, "headers": TEXT_HEADERS})
        await send({"type": "http.response.body", "body": PLAINTEXT})
    else:
        await lifespan(receive, send)
