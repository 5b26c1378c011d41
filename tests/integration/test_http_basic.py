"""The ASGI ``http`` scope as an app sees it, over a real socket, on both parsers.

Checked against the ASGI HTTP spec: every key, its type and its exact value for requests
written byte by byte; ASGI 2 (double-callable) apps; and per-request context isolation on
one keep-alive connection.
"""
from __future__ import annotations

import contextvars
import json
import re
from typing import Any, Callable

import httpx

from tests.support import RawClient, RawResponse, RunningServer

Serve = Callable[..., RunningServer]


def scope_recorder() -> tuple[Any, list[dict[str, Any]]]:
    """An app that keeps every scope it is called with and answers 200 'ok'."""
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        scopes.append(scope)
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app, scopes


def roundtrip(client: RawClient, raw: bytes, method: bytes = b"GET") -> RawResponse:
    client.send(raw)
    return client.read_response(method)


def one_scope(server: RunningServer, scopes: list[dict[str, Any]], raw: bytes) -> dict[str, Any]:
    before = len(scopes)
    with server.raw() as client:
        response = roundtrip(client, raw)
    assert response.status == 200, response
    assert response.body == b"ok"
    assert len(scopes) == before + 1
    return scopes[-1]


def test_scope_keys_and_values(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    with server.raw() as client:
        response = roundtrip(
            client,
            b"GET /caf%C3%A9/a%20b/%2F?x=1&y=%20+z HTTP/1.1\r\nHost: example.com\r\nX-Multi: a\r\n"
            b"X-CusTom-Name:   spaced value  \r\nx-multi: b\r\nUser-Agent: t\r\n\r\n",
        )
        local = client.sock.getsockname()
    assert response.status == 200 and response.body == b"ok"
    scope = scopes[-1]
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["asgi"].get("spec_version", "2.0"), str)
    assert re.fullmatch(r"2\.\d+", scope["asgi"].get("spec_version", "2.0"))
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/caf\u00e9/a b//"
    assert type(scope["path"]) is str
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b/%2F"
    assert scope["query_string"] == b"x=1&y=%20+z"  # never url-decoded
    assert scope["root_path"] == ""
    headers = [tuple(h) for h in scope["headers"]]
    assert headers == [
        (b"host", b"example.com"),
        (b"x-multi", b"a"),
        (b"x-custom-name", b"spaced value"),
        (b"x-multi", b"b"),
        (b"user-agent", b"t"),
    ]
    assert all(type(n) is bytes and type(v) is bytes for n, v in headers)
    assert tuple(scope["client"]) == ("127.0.0.1", local[1])
    assert type(scope["client"][1]) is int
    assert tuple(scope["server"]) == ("127.0.0.1", server.port)
    assert isinstance(scope["state"], dict)
    assert isinstance(scope["extensions"], dict)
    assert "http.response.zerocopysend" in scope["extensions"]


def test_scope_via_httpx(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        response = client.get("/p/q", params={"a": "b c"})
    assert response.status_code == 200 and response.text == "ok"
    assert response.http_version == "HTTP/1.1"
    scope = scopes[-1]
    assert scope["path"] == "/p/q"
    assert scope["query_string"] in (b"a=b+c", b"a=b%20c")
    assert (b"host", f"127.0.0.1:{server.port}".encode()) in [tuple(h) for h in scope["headers"]]


def test_methods_and_versions(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    for method in (b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"PURGE", b"M-SEARCH"):
        scope = one_scope(server, scopes, method + b" /m HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        assert scope["method"] == method.decode()
        assert type(scope["method"]) is str
    scope = one_scope(server, scopes, b"GET /old HTTP/1.0\r\n\r\n")
    assert scope["http_version"] == "1.0"
    assert scope["path"] == "/old"


def test_head_method_in_scope(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    with server.raw() as client:
        response = roundtrip(client, b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n", b"HEAD")
    assert response.status == 200 and response.body == b""
    assert scopes[-1]["method"] == "HEAD"


def test_empty_and_odd_query_strings(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    assert one_scope(server, scopes, b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n")["query_string"] == b""
    scope = one_scope(server, scopes, b"GET /p?a=%2F&b=%zz&c=?d HTTP/1.1\r\nHost: h\r\n\r\n")
    assert scope["path"] == "/p"
    assert scope["query_string"] == b"a=%2F&b=%zz&c=?d"
    scope = one_scope(server, scopes, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert scope["path"] == "/" and scope["raw_path"] == b"/" and scope["query_string"] == b""


def test_absolute_form_target(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    scope = one_scope(server, scopes, b"GET http://example.com/abs/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert scope["path"] == "/abs/p"
    assert scope["query_string"] == b"q=1"


def test_root_path(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app, root_path="/app")
    # Spec: path is the full path (root_path included); PATH_INFO = path minus root_path.
    scope = one_scope(server, scopes, b"GET /app/x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert scope["root_path"] == "/app"
    assert scope["path"] == "/app/x"
    assert scope["raw_path"] == b"/app/x"
    assert scope["query_string"] == b"y=1"
    # A proxy that strips the prefix: the app still sees a path under its root_path.
    scope = one_scope(server, scopes, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert scope["root_path"] == "/app"
    assert scope["path"] == "/app/x"
    assert scope["raw_path"] == b"/app/x"  # kept consistent with path
    # "Under root_path" is decided on a segment boundary: /apple is not under /app.
    scope = one_scope(server, scopes, b"GET /apple/x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (scope["path"], scope["raw_path"]) == ("/app/apple/x", b"/app/apple/x")
    scope = one_scope(server, scopes, b"GET /app HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (scope["path"], scope["raw_path"]) == ("/app", b"/app")


def test_header_bytes_preserved(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    scope = one_scope(
        server,
        scopes,
        b"GET / HTTP/1.1\r\nHOST: h\r\nCookie: a=1\r\nCookie: b=2\r\nX-Latin: caf\xe9\r\n"
        b"X-Empty:\r\nX-Inner: a  ,  b\r\n\r\n",
    )
    assert [tuple(h) for h in scope["headers"]] == [
        (b"host", b"h"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"x-latin", b"caf\xe9"),
        (b"x-empty", b""),
        (b"x-inner", b"a  ,  b"),
    ]


def test_each_request_gets_its_own_scope(serve: Serve) -> None:
    """An app mutating its scope (headers, state, path) never leaks into the next request."""
    seen: list[tuple[list[tuple[bytes, bytes]], dict[str, Any], str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(([tuple(h) for h in scope["headers"]], dict(scope["state"]), scope["path"]))
        scope["headers"].append((b"x-polluted", b"1"))
        scope["state"]["polluted"] = True
        scope["path"] = "/polluted"
        scope["extensions"]["polluted"] = {}
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app)
    with server.raw() as client:
        for _ in range(3):
            assert roundtrip(client, b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n").status == 200
    assert len(seen) == 3
    for headers, state, path in seen:
        assert headers == [(b"host", b"h")]
        assert "polluted" not in state
        assert path == "/p"


def test_asgi2_class_app(serve: Serve) -> None:
    class App:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            if self.scope["type"] != "http":
                return
            body = json.dumps({"type": self.scope["type"], "path": self.scope["path"]}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})

    server = serve(App)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        response = client.get("/two")
    assert response.status_code == 200
    assert response.json() == {"type": "http", "path": "/two"}


def test_asgi2_function_app(serve: Serve) -> None:
    def app(scope: dict[str, Any]) -> Any:
        async def instance(receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            message = await receive()
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b"asgi2:" + message["body"]})

        return instance

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        response = client.post("/x", content=b"hi")
    assert response.status_code == 201
    assert response.content == b"asgi2:hi"


request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")


def test_contextvars_do_not_leak_between_requests(serve: Serve) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        before = request_var.get()
        if scope["path"].startswith("/set/"):
            request_var.set(scope["path"][5:])
        body = f"{before}|{request_var.get()}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    server = serve(app)
    with server.raw() as client:
        assert roundtrip(client, b"GET /set/one HTTP/1.1\r\nHost: h\r\n\r\n").body == b"unset|one"
        assert roundtrip(client, b"GET /get HTTP/1.1\r\nHost: h\r\n\r\n").body == b"unset|unset"
        assert roundtrip(client, b"GET /set/two HTTP/1.1\r\nHost: h\r\n\r\n").body == b"unset|two"
        # Pipelined on the same connection, too.
        client.send(b"GET /set/three HTTP/1.1\r\nHost: h\r\n\r\nGET /get HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().body == b"unset|three"
        assert client.read_response().body == b"unset|unset"
    with server.raw() as client:
        assert roundtrip(client, b"GET /get HTTP/1.1\r\nHost: h\r\n\r\n").body == b"unset|unset"


def test_each_request_runs_in_its_own_named_task(serve: Serve) -> None:
    import asyncio

    seen: list[asyncio.Task[Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        task = asyncio.current_task()
        assert task is not None
        seen.append(task)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": task.get_name().encode()})

    server = serve(app)
    with server.raw() as client:
        names = [roundtrip(client, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").body for _ in range(3)]
    assert names == [b"asgiserve-request"] * 3
    assert len({id(task) for task in seen}) == 3


def test_a_task_factory_set_by_the_app_is_used_for_requests(serve: Serve) -> None:
    import asyncio

    made: list[str] = []

    def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    asyncio.get_running_loop().set_task_factory(factory)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    asyncio.get_running_loop().set_task_factory(None)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app)
    with server.raw() as client:
        assert roundtrip(client, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").body == b"ok"
    assert "RequestCycle.run_asgi" in made


def test_unix_socket_scope(serve: Serve, tmp_path: Any) -> None:
    app, scopes = scope_recorder()
    path = str(tmp_path / "s.sock")
    server = serve(app, uds=path)
    with server.raw() as client:
        response = roundtrip(client, b"GET /u HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.status == 200 and response.body == b"ok"
    scope = scopes[-1]
    # ASGI: server is [path, None] for a unix socket; client is optional (None when unknown).
    assert scope["server"] is None or (scope["server"][0] == path and scope["server"][1] is None)
    assert scope["client"] is None or isinstance(scope["client"][0], str)
    assert scope["path"] == "/u"


def test_options_asterisk(serve: Serve) -> None:
    app, scopes = scope_recorder()
    server = serve(app)
    with server.raw() as client:
        response = roundtrip(client, b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
        assert response.status == 200
        assert roundtrip(client, b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n").status == 200
    assert scopes[0]["method"] == "OPTIONS"
    assert scopes[0]["raw_path"] == b"*" and scopes[0]["path"] == "*"
