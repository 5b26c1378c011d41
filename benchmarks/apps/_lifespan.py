"""A correct, minimal ASGI lifespan answer shared by the raw ASGI apps (so no server logs a warning)."""
from __future__ import annotations

from typing import Awaitable, Callable


async def lifespan(receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

