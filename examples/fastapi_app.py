"""A FastAPI app: ``asgiserve examples.fastapi_app:app``.

Shows path parameters, a validated JSON body, a streaming response, a background task,
lifespan state and a WebSocket. GET /tasks lists what the background tasks recorded.

Try it::

    curl http://127.0.0.1:8000/items/1?q=hi
    curl -X POST http://127.0.0.1:8000/items -H 'content-type: application/json' -d '{"name":"pen","price":2}'
    curl -N http://127.0.0.1:8000/stream?count=3
    python -m websockets ws://127.0.0.1:8000/ws    # type a line, get "echo: <line>" back
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from fastapi import BackgroundTasks, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Whatever is yielded here is copied into every request's scope["state"].
    yield {"db": {"1": "apple", "2": "banana"}, "done_tasks": []}


app = FastAPI(title="asgiserve example", lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/")
async def root() -> dict[str, str]:
    return {"framework": "fastapi", "server": "asgiserve"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request, q: str | None = None) -> dict[str, Any]:
    name = request.state.db.get(str(item_id))
    return {"item_id": item_id, "name": name, "q": q}


@app.post("/items", status_code=201)
async def create_item(item: Item) -> dict[str, Any]:
    return {"created": item.model_dump(), "price_with_tax": round(item.price * 1.2, 2)}


@app.get("/stream")
async def stream(count: int = 5) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


def record(done: list[str], message: str) -> None:
    done.append(message)


@app.post("/notify/{who}", status_code=202)
async def notify(who: str, request: Request, background: BackgroundTasks) -> dict[str, str]:
    # Runs after the response has been sent.
    background.add_task(record, request.state.done_tasks, f"notified {who}")
    return {"queued": who}


@app.get("/tasks")
async def tasks(request: Request) -> dict[str, list[str]]:
    return {"done": list(request.state.done_tasks)}


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:
    # A chat-like echo: every text message is answered with "echo: <text>" until the client leaves.
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        pass  # the client closed the connection (or it dropped): nothing left to send
