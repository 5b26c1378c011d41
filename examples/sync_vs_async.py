"""One ASGI app, the same 50 ms handler written twice:

- ``/async``: an ASGI handler that awaits ``asyncio.sleep(0.05)`` on the event loop;
- ``/sync``: a WSGI view that ``time.sleep(0.05)``s, mounted inside through asgiserve's bridge.

    asgiserve --threads 8 examples.sync_vs_async:app

With N threads, /sync serves at most N requests per 50 ms (N * 20 req/s); further requests
wait for a thread (watch ``wsgi.stats`` / the debug log). /async is bounded only by the loop.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from asgiserve.wsgi import WSGIMiddleware

DELAY = 0.05


def sync_view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    time.sleep(DELAY)
    body = b"slept 50 ms in a thread\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


wsgi = WSGIMiddleware(sync_view, threads=int(os.environ.get("SYNC_THREADS", "8")))


async def send_text(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await wsgi(scope, receive, send)  # completes startup/shutdown and stops the pool
        return
    path = scope["path"]
    if path == "/async":
        await asyncio.sleep(DELAY)
        await send_text(send, 200, b"slept 50 ms on the event loop\n")
    elif path == "/sync" or path.startswith("/sync/"):
        await wsgi(scope, receive, send)
    elif path == "/stats":
        await send_text(send, 200, json.dumps(wsgi.stats).encode(), b"application/json")
    else:
        await send_text(send, 404, b"try /async, /sync or /stats\n")
