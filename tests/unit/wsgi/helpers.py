"""A fake ASGI server side for driving WSGIMiddleware directly (no sockets)."""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable, Optional

from asgiserve.wsgi import WSGIMiddleware


def http_scope(
    path: str = "/",
    method: str = "GET",
    headers: Optional[list[tuple[bytes, bytes]]] = None,
    query: bytes = b"",
    **extra: Any,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers or [(b"host", b"testserver")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "extensions": {},
    }
    scope.update(extra)
    return scope


class FakeServer:
    """receive() hands out ``body`` messages, then waits until ``disconnect()``.

    send() records messages; ``on_send`` can block or raise to imitate a slow or gone client.
    ``raise_after_disconnect`` selects asgiserve's behaviour (send raises OSError) versus
    uvicorn's (send is silently dropped).
    """

    def __init__(
        self,
        body: Optional[list[bytes]] = None,
        on_send: Optional[Callable[[dict[str, Any]], Awaitable[None]]] = None,
        raise_after_disconnect: bool = True,
        hold_body: bool = False,
    ) -> None:
        chunks = body if body is not None else [b""]
        self.messages = deque(
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
        )
        self.hold_body = hold_body  # receive() blocks forever instead of delivering the body
        self.sent: list[dict[str, Any]] = []
        self.on_send = on_send
        self.receive_calls = 0
        self.gone = asyncio.Event()
        self.raise_after_disconnect = raise_after_disconnect

    def disconnect(self) -> None:
        self.gone.set()

    async def receive(self) -> dict[str, Any]:
        self.receive_calls += 1
        if self.messages and not self.gone.is_set() and not self.hold_body:
            return self.messages.popleft()
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone.is_set():
            if self.raise_after_disconnect:
                raise ConnectionResetError("client gone")
            return
        self.sent.append(message)
        if self.on_send is not None:
            await self.on_send(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return {k.lower(): v for k, v in self.sent[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:] if m["type"] == "http.response.body")

    @property
    def complete(self) -> bool:
        return bool(self.sent) and self.sent[-1]["type"] == "http.response.body" and not self.sent[-1].get(
            "more_body", False
        )


async def call(
    app: Any, scope: Optional[dict[str, Any]] = None, server: Optional[FakeServer] = None, **options: Any
) -> FakeServer:
    """Run one request through a fresh WSGIMiddleware; returns the fake server with what was sent."""
    mw = app if isinstance(app, WSGIMiddleware) else WSGIMiddleware(app, **options)
    server = server or FakeServer()
    try:
        await asyncio.wait_for(mw(scope or http_scope(), server.receive, server.send), 10)
    finally:
        if mw is not app:
            mw.close(5)
    return server
