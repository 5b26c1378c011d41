"""Raw ASGI app: ``/`` (and anything else) answers plaintext, ``/json`` serialises a dict per request."""
from __future__ import annotations

import json
from typing import Any

from ._lifespan import lifespan

PLAINTEXT = b"Hello, world!"
TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"13")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return await lifespan(receive, send)
    if scope["path"] == "/json":
        # Serialised per request on purpose, as a real JSON endpoint would be.
        body = json.dumps({"message": "Hello, world!"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": TEXT_HEADERS})
    await send({"type": "http.response.body", "body": PLAINTEXT})
