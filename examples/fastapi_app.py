"""A FastAPI app: ``asgiserve examples.fastapi_app:app``.

Shows path parameters, a validated JSON body, a streaming response, a background task and
lifespan state. GET /tasks lists what the background tasks recorded.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from fastapi import BackgroundTasks, FastAPI, Request
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
