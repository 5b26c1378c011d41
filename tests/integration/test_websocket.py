"""WebSockets through the real server (both parsers): the handshake, the ASGI websocket scope and
messages, denial responses, refused handshakes, app errors, permessage-deflate, the access log,
--ws none and WSGI apps.

Frame-level protocol rules are in test_websocket_frames.py; keepalive, flow control, shutdown
and limits in test_websocket_lifecycle.py. The happy paths use the ``websockets`` client; the
edges use the raw client in tests/wsclient.py.
"""
from __future__ import annotations

import json
import logging
import queue
import time
from typing import Any, Callable

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support import RunningServer, ok_app
from tests.wsclient import TEXT, WSClient, build_frame, handshake_request, new_key

Serve = Callable[..., RunningServer]
MiB = 1024 * 1024


def ws_url(server: RunningServer, path: str = "/") -> str:
    return f"ws://{server.host}:{server.port}{path}"


def ws_connect(server: RunningServer, path: str = "/", **kw: Any) -> Any:
    """The websockets sync client, with bounded timeouts and no proxy from the environment."""
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 5)
    return connect(ws_url(server, path), proxy=None, **kw)


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def access_lines(server: RunningServer) -> list[str]:
    return [r.getMessage() for r in server.logs.records if r.name == "asgiserve.access" and r.levelno >= logging.INFO]


# -- apps ---------------------------------------------------------------------------------

async def http_ok(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def lifespan(scope: dict[str, Any], receive: Any, send: Any, state: dict[str, Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"].update(state)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo_loop(receive: Any, send: Any) -> dict[str, Any]:
    """Echo every message; return the websocket.disconnect message."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return dict(message)
        assert message["type"] == "websocket.receive", message
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        return await http_ok(send)
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await echo_loop(receive, send)


class ScopeApp:
    """Records every websocket scope (and the first message), accepts, then echoes.

    Each websocket scope's state gets a key written to it, which the next connection must not see.
    """

    def __init__(self, accept: dict[str, Any] | None = None) -> None:
        self.scopes: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.first: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.accept = accept or {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(scope, receive, send, {"greeting": "hello"})
        if scope["type"] == "http":
            return await http_ok(send)
        state_before = dict(scope["state"])
        scope["state"]["written_by_connection"] = scope["path"]
        self.scopes.put({**scope, "state": state_before})
        self.first.put(await receive())
        await send({"type": "websocket.accept", **self.accept})
        await echo_loop(receive, send)

    def scope(self) -> dict[str, Any]:
        return self.scopes.get(timeout=5)


class CallCounter:
    """An app that would accept any websocket and answer any request, and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        self.calls.append(scope["type"])
        if scope["type"] == "http":
            return await http_ok(send)
        await receive()
        await send({"type": "websocket.accept"})
        await echo_loop(receive, send)


# -- echo round trips with the websockets client -----------------------------------------------

def test_echo_text_bytes_and_empty_messages(serve: Serve) -> None:
    server = serve(echo_app)
    with ws_connect(server) as ws:
        for message in ["hello", "h\u00e9llo \u2603 \U0001F600", b"\x00\xff\x10binary", "", b""]:
            ws.send(message)
            assert ws.recv(timeout=5) == message
    assert ws.close_code == 1000


def test_echo_one_mebibyte_message(serve: Serve) -> None:
    server = serve(echo_app)
    payload = bytes(range(256)) * (4 * 1024)  # 1 MiB, incompressible enough to matter
    with ws_connect(server, max_size=2 * MiB) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
        ws.send("x" * MiB)
        assert ws.recv(timeout=10) == "x" * MiB


async def test_echo_with_the_asyncio_client(serve: Serve) -> None:
    from websockets.asyncio.client import connect as aconnect

    server = serve(echo_app)
    async with aconnect(ws_url(server), proxy=None, open_timeout=5, close_timeout=5) as ws:
        for i in range(20):
            await ws.send(f"message {i}")
        assert [await ws.recv() for _ in range(20)] == [f"message {i}" for i in range(20)]


# -- upgrade detection -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "upgrade,connection",
    [
        (b"websocket", b"Upgrade"),
        (b"WebSocket", b"upgrade"),
        (b"WEBSOCKET", b"UPGRADE"),
        (b"websocket", b"keep-alive, Upgrade"),  # Firefox
        (b"websocket", b"Upgrade, keep-alive"),
    ],
)
def test_upgrade_tokens_are_case_insensitive_and_connection_is_a_list(
    serve: Serve, upgrade: bytes, connection: bytes
) -> None:
    app = CallCounter()
    server = serve(app)
    with WSClient.connect(server.host, server.port, upgrade=upgrade, connection=connection) as ws:
        ws.send_text("hi")
        assert ws.recv_text() == "hi"
    assert app.calls == ["websocket"]


def test_first_frame_sent_with_the_handshake_is_not_lost(serve: Serve) -> None:
    server = serve(echo_app)
    with WSClient.connect(server.host, server.port, then=build_frame(TEXT, b"early bird")) as ws:
        assert ws.recv_text() == "early bird"


def test_many_frames_sent_with_the_handshake_in_one_packet(serve: Serve) -> None:
    server = serve(echo_app)
    frames = b"".join(build_frame(TEXT, f"m{i}".encode()) for i in range(100))
    with WSClient.connect(server.host, server.port, then=frames) as ws:
        assert [ws.recv_text() for _ in range(100)] == [f"m{i}" for i in range(100)]


def test_handshake_split_across_packets(serve: Serve) -> None:
    server = serve(echo_app)
    request = handshake_request(b"/split") + build_frame(TEXT, b"after a slow handshake")
    with WSClient.open(server.host, server.port) as ws:
        for i in range(0, len(request), 37):
            ws.send_raw(request[i:i + 37])
            time.sleep(0.002)  # separate segments, not readiness: nothing is waited for
        assert ws.read_response_head().status == 101
        assert ws.recv_text() == "after a slow handshake"


async def test_many_concurrent_websockets(serve: Serve) -> None:
    import asyncio

    from websockets.asyncio.client import connect as aconnect

    server = serve(echo_app)

    async def client(n: int) -> list[str]:
        async with aconnect(ws_url(server, f"/c{n}"), proxy=None, open_timeout=5, close_timeout=5) as ws:
            for i in range(10):
                await ws.send(f"{n}:{i}")
            return [str(await ws.recv()) for _ in range(10)]

    results = await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(30))), 30)
    assert results == [[f"{n}:{i}" for i in range(10)] for n in range(30)]


# -- the scope ---------------------------------------------------------------------------------

def test_scope(serve: Serve) -> None:
    app = ScopeApp()
    server = serve(app)
    key = new_key()
    with WSClient.open(server.host, server.port) as ws:
        ws.send_raw(handshake_request(
            b"/chat/r%C3%A9sum%C3%A9?x=1&y=%20",
            key=key,
            headers=[b"X-Custom: Some Value", b"Sec-WebSocket-Protocol: chat, superchat", b"Sec-WebSocket-Protocol: v2"],
        ))
        assert ws.read_response_head().status == 101
        scope = app.scope()
        assert scope["type"] == "websocket"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
        assert scope["http_version"] == "1.1"
        assert scope["scheme"] == "ws"
        assert scope["path"] == "/chat/r\u00e9sum\u00e9"
        assert scope["raw_path"] == b"/chat/r%C3%A9sum%C3%A9"
        assert scope["query_string"] == b"x=1&y=%20"
        assert scope["root_path"] == ""
        assert all(type(n) is bytes and type(v) is bytes and n == n.lower() for n, v in scope["headers"])
        assert (b"x-custom", b"Some Value") in [tuple(h) for h in scope["headers"]]
        assert (b"sec-websocket-key", key) in [tuple(h) for h in scope["headers"]]
        assert list(scope["client"]) == list(ws.sock.getsockname()[:2])
        assert list(scope["server"]) == [server.host, server.port]
        assert scope["subprotocols"] == ["chat", "superchat", "v2"]
        assert "websocket.http.response" in scope["extensions"]
        assert scope["state"] == {"greeting": "hello"}  # a copy of the lifespan state...
        assert app.first.get(timeout=5) == {"type": "websocket.connect"}
    with WSClient.connect(server.host, server.port, b"/second") as ws:
        second = app.scope()
        assert second["state"] == {"greeting": "hello"}  # ...that the first connection's writes did not reach
        assert second["subprotocols"] == []
        assert second["path"] == "/second" and second["query_string"] == b""


def test_scope_root_path(serve: Serve) -> None:
    app = ScopeApp()
    server = serve(app, root_path="/app")
    with WSClient.connect(server.host, server.port, b"/app/ws"):
        scope = app.scope()
    assert scope["root_path"] == "/app"
    assert scope["path"] == "/app/ws"


@pytest.mark.parametrize(
    "headers,scheme",
    [
        ([b"X-Forwarded-Proto: https", b"X-Forwarded-For: 198.51.100.7"], "wss"),
        ([b"X-Forwarded-Proto: wss", b"X-Forwarded-For: 198.51.100.7"], "wss"),
        ([b"X-Forwarded-Proto: http", b"X-Forwarded-For: 198.51.100.7"], "ws"),
        ([b"Forwarded: for=198.51.100.7;proto=https"], "wss"),  # alone: X-Forwarded-* would win
        ([b"Forwarded: for=198.51.100.7;proto=http"], "ws"),
    ],
)
def test_scheme_from_trusted_proxy_headers(serve: Serve, headers: list[bytes], scheme: str) -> None:
    app = ScopeApp()
    server = serve(app)  # forwarded_allow_ips defaults to 127.0.0.1: the test client is trusted
    with WSClient.connect(server.host, server.port, headers=headers):
        scope = app.scope()
    assert scope["scheme"] == scheme
    assert scope["client"][0] == "198.51.100.7"


def test_proxy_headers_from_an_untrusted_peer_are_ignored(serve: Serve) -> None:
    app = ScopeApp()
    server = serve(app, forwarded_allow_ips="10.0.0.1")
    with WSClient.connect(server.host, server.port, headers=[b"X-Forwarded-Proto: https", b"X-Forwarded-For: 198.51.100.7"]):
        scope = app.scope()
    assert scope["scheme"] == "ws"
    assert scope["client"][0] == "127.0.0.1"


# -- accept: subprotocol and headers --------------------------------------------------------------

def test_accept_with_subprotocol_and_headers(serve: Serve) -> None:
    app = ScopeApp(accept={"subprotocol": "superchat", "headers": [(b"x-accepted-by", b"test-app"), (b"set-cookie", b"a=1")]})
    server = serve(app)
    with ws_connect(server, subprotocols=["chat", "superchat"]) as ws:
        assert ws.subprotocol == "superchat"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "superchat"
        assert ws.response.headers["X-Accepted-By"] == "test-app"
        assert ws.response.headers["Set-Cookie"] == "a=1"
        ws.send("still works")
        assert ws.recv(timeout=5) == "still works"
    assert app.scope()["subprotocols"] == ["chat", "superchat"]


def test_accept_without_subprotocol_sends_no_protocol_header(serve: Serve) -> None:
    server = serve(echo_app)
    with WSClient.connect(server.host, server.port, headers=[b"Sec-WebSocket-Protocol: chat"]) as ws:
        assert ws.response is not None and ws.response.header(b"sec-websocket-protocol") is None


# -- denial responses (the websocket.http.response extension) ---------------------------------------

async def denial_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "websocket.http.response.body", "body": b"no token, ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"no entry", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b""})


def test_denial_response_is_an_http_response(serve: Serve) -> None:
    server = serve(denial_app)
    with WSClient.open(server.host, server.port) as ws:
        ws.send_raw(handshake_request(b"/private"))
        response = ws.read_response()
    assert response.status == 401
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"www-authenticate") == b"Bearer"
    assert response.body == b"no token, no entry"
    assert response.header(b"sec-websocket-accept") is None
    assert any('"GET /private HTTP/1.1" 401' in line for line in wait_until(lambda: access_lines(server), what="an access line"))


def test_denial_response_seen_by_the_websockets_client(serve: Serve) -> None:
    server = serve(denial_app)
    with pytest.raises(InvalidStatus) as caught:
        ws_connect(server)
    assert caught.value.response.status_code == 401
    assert caught.value.response.body == b"no token, no entry"


async def close_before_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.close", "code": 1008})


def test_close_before_accept_is_403(serve: Serve) -> None:
    server = serve(close_before_accept)
    with WSClient.open(server.host, server.port) as ws:
        ws.send_raw(handshake_request(b"/closed"))
        response = ws.read_response()
    assert response.status == 403
    with pytest.raises(InvalidStatus) as caught:
        ws_connect(server)
    assert caught.value.response.status_code == 403
    lines = wait_until(lambda: [ln for ln in access_lines(server) if "/closed" in ln], what="an access line")
    assert '"GET /closed HTTP/1.1" 403' in lines[0]


# -- refused handshakes: the app is not called ---------------------------------------------------

@pytest.mark.parametrize(
    "request_bytes,status",
    [
        pytest.param(handshake_request(key=b"-"), 400, id="no-key"),
        pytest.param(handshake_request(key=b""), 400, id="empty-key"),
        pytest.param(handshake_request(key=b"not base64 at all!!"), 400, id="key-not-base64"),
        pytest.param(handshake_request(key=b"AAAAAAAAAAAAAAAAAAAA"), 400, id="key-15-bytes"),
        pytest.param(handshake_request(key=b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), 400, id="key-32-bytes"),
        pytest.param(handshake_request(method=b"POST", headers=[b"Content-Length: 0"]), 400, id="post"),
        pytest.param(handshake_request(http_version=b"HTTP/1.0"), 400, id="http-1.0"),
        pytest.param(handshake_request(version=b"8"), 426, id="version-8"),
        pytest.param(handshake_request(version=b"14"), 426, id="version-14"),
    ],
)
def test_invalid_handshake_is_refused_without_calling_the_app(serve: Serve, request_bytes: bytes, status: int) -> None:
    app = CallCounter()
    server = serve(app)
    with WSClient.open(server.host, server.port) as ws:
        ws.send_raw(request_bytes)
        response = ws.read_response()
    assert response.status == status, response.head
    if status == 426:
        assert response.header(b"sec-websocket-version") == b"13"
    assert response.header(b"sec-websocket-accept") is None
    assert app.calls == []


# -- app errors ------------------------------------------------------------------------------------

class Boom(RuntimeError):
    pass


def error_records(server: RunningServer, exc_type: type = Boom) -> list[logging.LogRecord]:
    return [r for r in server.logs.records if r.exc_info and isinstance(r.exc_info[1], exc_type) and r.levelno >= logging.ERROR]


async def raise_before_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    raise Boom("before accept")


async def return_before_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()


def test_app_raising_before_accept_is_500_and_logged(serve: Serve) -> None:
    server = serve(raise_before_accept)
    with WSClient.open(server.host, server.port) as ws:
        ws.send_raw(handshake_request())
        assert ws.read_response().status == 500
    (record,) = wait_until(lambda: error_records(server), what="the error log")
    assert record.exc_info and record.exc_info[2] is not None  # logged with its traceback
    assert "before accept" in server.logs.text()


def test_app_returning_before_accept_is_500(serve: Serve) -> None:
    server = serve(return_before_accept)
    with WSClient.open(server.host, server.port) as ws:
        ws.send_raw(handshake_request())
        assert ws.read_response().status == 500


# -- ws="none" and WSGI apps: upgrade requests are plain HTTP ----------------------------------------

def test_ws_none_serves_upgrade_requests_as_http_and_warns_once(serve: Serve) -> None:
    app = CallCounter()
    server = serve(app, ws="none")
    for _ in range(3):
        with WSClient.open(server.host, server.port) as ws:
            ws.send_raw(handshake_request())
            response = ws.read_response()
        assert response.status == 200 and response.body == b"ok"
        assert response.header(b"sec-websocket-accept") is None
    assert app.calls == ["http", "http", "http"]
    warnings = [r.getMessage() for r in server.logs.records if r.levelno == logging.WARNING]
    about_ws = [w for w in warnings if "websocket" in w.lower()]
    assert len(about_ws) == 1, warnings


def test_ws_none_with_ok_app(serve: Serve) -> None:
    server = serve(ok_app, ws="none")
    with pytest.raises(InvalidStatus) as caught:
        ws_connect(server)
    assert caught.value.response.status_code == 200


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps({"upgrade": environ.get("HTTP_UPGRADE"), "path": environ["PATH_INFO"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.mark.parametrize("interface", ["auto", "wsgi"])
def test_upgrade_request_to_a_wsgi_app_is_plain_http(serve: Serve, interface: str) -> None:
    server = serve(wsgi_app, interface=interface)
    for _ in range(2):
        with WSClient.open(server.host, server.port) as ws:
            ws.send_raw(handshake_request(b"/wsgi"))
            response = ws.read_response()
        assert response.status == 200
        assert json.loads(response.body) == {"upgrade": "websocket", "path": "/wsgi"}
        assert response.header(b"sec-websocket-accept") is None
