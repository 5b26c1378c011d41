"""A Starlette app: ``asgiserve examples.starlette_app:app``.

Routes: GET / (JSON), GET /users/{user_id:int}, POST /echo (JSON body echoed back),
GET /stream (a streaming response), GET /state (the lifespan state, per request),
WebSocket /ws (echoes text messages: ``python -m websockets ws://127.0.0.1:8000/ws``).
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"started": True, "greeting": "hello from lifespan"}


async def homepage(request: Request) -> JSONResponse:
    return JSONResponse({"framework": "starlette", "path": request.url.path, "client": request.client.host
                         if request.client else None, "scheme": request.url.scheme})


async def user(request: Request) -> JSONResponse:
    return JSONResponse({"user_id": request.path_params["user_id"]})


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": await request.json()})


async def stream(request: Request) -> StreamingResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"chunk {i}\n".encode()

    return StreamingResponse(numbers(), media_type="text/plain")


async def state(request: Request) -> JSONResponse:
    return JSONResponse({"greeting": request.state.greeting, "started": request.state.started})


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def not_found(request: Request, exc: Exception) -> PlainTextResponse:
    return PlainTextResponse("nothing here", status_code=404)


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/users/{user_id:int}", user),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/state", state),
        WebSocketRoute("/ws", ws_echo),
    ],
    exception_handlers={404: not_found},
    lifespan=lifespan,
)
