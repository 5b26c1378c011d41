"""The example apps (raw ASGI, Starlette, FastAPI) and the built-in demo end to end through the real server,
both parsers."""
from __future__ import annotations

import threading
from typing import Any, Callable

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from asgiserve import demo
from examples import fastapi_app, hello, starlette_app
from tests.support import RunningServer

Serve = Callable[..., RunningServer]


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10)


def ws_connect(server: RunningServer, path: str) -> ClientConnection:
    return connect(f"ws://{server.host}:{server.port}{path}", open_timeout=10, close_timeout=10)


def returns_after_websocket(app: Any) -> tuple[Any, threading.Event]:
    """Wraps app; the event is set once its call for a websocket scope has returned."""
    returned = threading.Event()

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        if scope["type"] == "websocket":
            returned.set()

    return wrapped, returned


# -- examples/hello.py ----------------------------------------------------------------------
def test_hello(serve: Serve) -> None:
    server = serve(hello.app)
    with client(server) as c:
        assert c.get("/").text == "Hello, world!\n"
        assert c.get("/", params={"name": "Ann"}).text == "Hello, Ann!\n"
        assert c.get("/nope").status_code == 404
        echoed = c.post("/echo", content=iter([b"part one, ", b"part two"]))
        assert echoed.text == "part one, part two"
        assert echoed.headers.get("transfer-encoding") == "chunked"


# -- examples/starlette_app.py -------------------------------------------------------------
def test_starlette_routes(serve: Serve) -> None:
    server = serve(starlette_app.app)
    with client(server) as c:
        home = c.get("/").json()
        assert home == {"framework": "starlette", "path": "/", "client": "127.0.0.1", "scheme": "http"}
        assert c.get("/users/42").json() == {"user_id": 42}
        missing = c.get("/users/not-a-number")
        assert missing.status_code == 404 and missing.text == "nothing here"
        assert c.post("/echo", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
        assert c.get("/state").json() == {"greeting": "hello from lifespan", "started": True}


def test_starlette_streaming_is_chunked(serve: Serve) -> None:
    server = serve(starlette_app.app)
    with server.raw() as raw:
        raw.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        response = raw.read_response()
    assert response.status == 200
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.header(b"content-length") is None
    assert response.body == b"".join(f"chunk {i}\n".encode() for i in range(5))


def test_starlette_websocket_echo(serve: Serve) -> None:
    server = serve(starlette_app.app)
    with ws_connect(server, "/ws") as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
    assert ws.close_code == 1000


def test_starlette_sees_proxy_headers(serve: Serve) -> None:
    server = serve(starlette_app.app)
    with client(server) as c:
        home = c.get("/", headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}).json()
    assert home["client"] == "203.0.113.9" and home["scheme"] == "https"


# -- examples/fastapi_app.py ---------------------------------------------------------------
def test_fastapi_path_params_and_lifespan_state(serve: Serve) -> None:
    server = serve(fastapi_app.app)
    with client(server) as c:
        assert c.get("/").json() == {"framework": "fastapi", "server": "asgiserve"}
        assert c.get("/items/2", params={"q": "ripe"}).json() == {"item_id": 2, "name": "banana", "q": "ripe"}
        assert c.get("/items/9").json() == {"item_id": 9, "name": None, "q": None}
        assert c.get("/items/two").status_code == 422


def test_fastapi_json_body(serve: Serve) -> None:
    server = serve(fastapi_app.app)
    with client(server) as c:
        created = c.post("/items", json={"name": "pen", "price": 2.5, "tags": ["office"]})
        assert created.status_code == 201
        assert created.json() == {"created": {"name": "pen", "price": 2.5, "tags": ["office"]}, "price_with_tax": 3.0}
        invalid = c.post("/items", json={"name": "pen"})
        assert invalid.status_code == 422
        broken = c.post("/items", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 422


def test_fastapi_streaming(serve: Serve) -> None:
    server = serve(fastapi_app.app)
    with client(server) as c:
        with c.stream("GET", "/stream", params={"count": 50}) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            lines = list(response.iter_lines())
    assert lines == [f"line {i}" for i in range(50)]


def test_fastapi_background_task_runs_after_the_response(serve: Serve) -> None:
    finished = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Starlette runs background tasks inside the app call, after the response is sent:
        # when the call returns for /notify, the task has run.
        await fastapi_app.app(scope, receive, send)
        if scope["type"] == "http" and scope["path"].startswith("/notify/"):
            finished.set()

    server = serve(app)
    with client(server) as c:
        queued = c.post("/notify/bob")
        assert queued.status_code == 202 and queued.json() == {"queued": "bob"}
        assert finished.wait(10)
        assert c.get("/tasks").json() == {"done": ["notified bob"]}


def test_fastapi_openapi_and_head(serve: Serve) -> None:
    server = serve(fastapi_app.app)
    with client(server) as c:
        assert c.get("/openapi.json").json()["info"]["title"] == "asgiserve example"
    with server.raw() as raw:
        raw.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = raw.read_response(method=b"HEAD")
    assert head.body == b""


def test_fastapi_websocket_chat(serve: Serve) -> None:
    app, returned = returns_after_websocket(fastapi_app.app)
    server = serve(app)
    with ws_connect(server, "/ws") as ws:
        for text in ["hello", "", "zwei wörter", "x" * 70_000]:
            ws.send(text)
            assert ws.recv(timeout=10) == f"echo: {text}"
    # The server answered our close frame (1006 would mean the connection was just dropped) and
    # the endpoint left its loop through WebSocketDisconnect.
    assert ws.close_code == 1000
    assert returned.wait(10)
    with client(server) as c:  # http still works next to it
        assert c.get("/").json() == {"framework": "fastapi", "server": "asgiserve"}


def test_fastapi_websocket_unknown_path_is_refused(serve: Serve) -> None:
    server = serve(fastapi_app.app)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(server, "/nope")
    assert refused.value.response.status_code == 403


# -- asgiserve/demo.py (served when asgiserve runs without APP) ------------------------------
def test_demo_http_pages(serve: Serve) -> None:
    server = serve(demo.app)
    with client(server) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert "asgiserve" in page.text and 'href="/api"' in page.text
        assert c.get("/api").json()["path"] == "/api"
        assert c.get("/ws").status_code == 404  # plain http to the websocket path: unchanged 404
        assert c.get("/nope").status_code == 404
        not_allowed = c.post("/")
        assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "GET, HEAD"


def test_demo_page_has_the_websocket_panel(serve: Serve) -> None:
    server = serve(demo.app)
    with client(server) as c:
        page = c.get("/").text
    assert 'id="ws-panel"' in page and 'id="ws-input"' in page and 'id="ws-status"' in page
    assert "new WebSocket(url)" in page and '"wss://" : "ws://"' in page and '"/ws"' in page
    # Everything inline: no external scripts, styles, fonts or images.
    assert "src=" not in page and "<link" not in page and "http://" not in page and "https://" not in page


def test_demo_websocket_echoes_text_and_bytes(serve: Serve) -> None:
    app, returned = returns_after_websocket(demo.app)
    server = serve(app)
    with ws_connect(server, "/ws") as ws:
        ws.send("hello demo")
        assert ws.recv(timeout=10) == "hello demo"
        ws.send(b"\x00\x01binary\xff")
        assert ws.recv(timeout=10) == b"\x00\x01binary\xff"
        ws.send("ünïcode ✓")
        assert ws.recv(timeout=10) == "ünïcode ✓"
    assert ws.close_code == 1000
    assert returned.wait(10)  # the demo's echo loop ended on websocket.disconnect


def test_demo_websocket_to_another_path_gets_403(serve: Serve) -> None:
    server = serve(demo.app)
    for path in ["/", "/api", "/ws/extra"]:
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(server, path)
        assert refused.value.response.status_code == 403
    with ws_connect(server, "/ws") as ws:  # the refusals left the server serving
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"
