"""One ASGI app, the same 50 ms handler written twice:

- ``/async``: an ASGI handler that awaits ``asyncio.sleep(0.05)`` on the event loop;
- ``/sync``: a WSGI view that ``time.sleep(0.05)``s, mounted inside through asgiserve's bridge
  with its own pool of ``SYNC_THREADS`` threads (default 8).

    asgiserve --metrics 127.0.0.1:9100 examples.sync_vs_async:app
    python examples/sync_vs_async.py --load     # the same, plus clients ramping up on both endpoints

Open http://127.0.0.1:9100/ to watch it live. With N threads, /sync serves at most N requests
per 50 ms (N * 20 req/s); past N concurrent clients the pool is saturated, requests queue for a
thread and their queue wait (and latency) grows with every client added. /async keeps its 50 ms:
waiting costs no thread. ``/stats`` has the pool's own counters as JSON.
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


# -- python examples/sync_vs_async.py [--load] ------------------------------------------------------
RAMP = (4, 8, 16, 32, 64)  # clients on each endpoint, one step every RAMP_SECONDS
RAMP_SECONDS = 15.0


async def _client(port: int, path: str, until: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: load\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
    writer.close()


async def _ramp(port: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(100):  # until the server listens
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    until = loop.time() + RAMP_SECONDS * len(RAMP)
    clients: list[asyncio.Task[None]] = []
    for step in RAMP:
        more = step - len(clients) // 2
        clients += [loop.create_task(_client(port, path, until)) for path in ("/sync", "/async") for _ in range(more)]
        print(f"load: {step} clients on /sync and {step} on /async", flush=True)
        await asyncio.sleep(RAMP_SECONDS)
    await asyncio.gather(*clients, return_exceptions=True)
    print("load: done", flush=True)


def ramp(port: int) -> None:
    """Keep-alive clients on both endpoints, more every RAMP_SECONDS (run in its own process: a
    client sharing the server's GIL would show up in the figures)."""
    asyncio.run(_ramp(port))


if __name__ == "__main__":
    import multiprocessing
    import sys

    import asgiserve

    if "--load" in sys.argv:
        multiprocessing.Process(target=ramp, args=(8000,), daemon=True).start()  # before any loop or thread
    asgiserve.run(app, port=8000, metrics="127.0.0.1:9100", access_log=False)
