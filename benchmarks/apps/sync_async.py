"""The showcase: the same 50 ms of waiting written async (ASGI) and sync (WSGI, run in a thread pool).

ASGI ``app``:  ``/async`` awaits ``asyncio.sleep(0.05)``; ``/cpu`` burns ``CPU_ITERATIONS`` of pure Python.
WSGI ``wsgi_app``: ``/sync`` calls ``time.sleep(0.05)``; ``/cpu`` burns the same CPU work.
The CPU work is a fixed iteration count (not a timed spin) so every server does identical work.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterable

from ._lifespan import lifespan

IO_SECONDS = 0.05
CPU_ITERATIONS = 100_000  # about 5-6 ms of CPython on the benchmark machine
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
WSGI_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "2")]


def cpu_work(n: int = CPU_ITERATIONS) -> int:
    acc = 0
    for i in range(n):
        acc += i * i % 7
    return acc


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return await lifespan(receive, send)
    if scope["path"] == "/cpu":
        cpu_work()
    else:
        await asyncio.sleep(IO_SECONDS)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/cpu":
        cpu_work()
    else:
        time.sleep(IO_SECONDS)
    start_response("200 OK", WSGI_HEADERS)
    return [b"ok"]
