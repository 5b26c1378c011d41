"""WSGI apps through the real server (both parsers): environ on the wire, errors, framing,
Flask and Django end to end, pool saturation, and the bridge under another ASGI server."""
from __future__ import annotations

import contextvars
import json
import socket
import sys
import threading
from typing import Any, Callable, Iterator

import httpx
import pytest

from asgiserve.wsgi import WSGIMiddleware
from tests.support import RunningServer

Serve = Callable[..., RunningServer]


def environ_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    data = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
    data["body"] = body.decode("latin-1")
    data["has_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    data["errors_has_write"] = hasattr(environ["wsgi.errors"], "write")
    out = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


def get_environ(server: RunningServer, raw_request: bytes) -> dict[str, Any]:
    with server.raw() as client:
        client.send(raw_request)
        response = client.read_response()
    assert response.status == 200, response
    return json.loads(response.body)  # type: ignore[no-any-return]


def test_environ_over_the_wire(serve: Serve) -> None:
    server = serve(environ_app)
    env = get_environ(
        server,
        b"POST /a/%FF/b?q=1&r=%20 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 5\r\nX-Multi: a\r\nX-Multi: b\r\nCookie: a=1\r\nCookie: b=2\r\n"
        b"X_Multi: spoofed\r\nX-Latin: caf\xe9\r\n\r\nhello",
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/\xff/b"
    assert env["QUERY_STRING"] == "q=1&r=%20"
    assert env["RAW_URI"] == "/a/%FF/b?q=1&r=%20"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_X_MULTI"] == "a,b"  # never the spoofed X_Multi
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_LATIN"] == "caf\xe9"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True and env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["has_file_wrapper"] and env["errors_has_write"]
    assert env["body"] == "hello"


def test_environ_http10_and_root_path(serve: Serve) -> None:
    server = serve(environ_app, root_path="/app")
    env = get_environ(server, b"GET /x/y HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["SCRIPT_NAME"] == "/app" and env["PATH_INFO"] == "/x/y"
    assert "CONTENT_LENGTH" not in env and env["body"] == ""
    env = get_environ(server, b"GET /apple/x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert env["SCRIPT_NAME"] == "/app" and env["PATH_INFO"] == "/apple/x"


def test_chunked_upload_without_content_length(serve: Serve) -> None:
    server = serve(environ_app)
    env = get_environ(
        server,
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
    )
    assert env["body"] == "hello world" and "CONTENT_LENGTH" not in env


def test_expect_100_continue_only_when_the_app_reads(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/reject":
            start_response("413 Content Too Large", [("Content-Length", "0")])
            return []
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    server = serve(app)
    with server.raw() as client:
        client.send(b"PUT /reject HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, _, head = client.read_head()
        assert status == 413
    with server.raw() as client:
        client.send(b"PUT /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, _, _ = client.read_head()
        assert status == 100
        client.send(b"hello")
        response = client.read_response()
        assert response.status == 200 and response.body == b"hello"


def test_flask_example_end_to_end(serve: Serve) -> None:
    from examples.flask_app import app

    server = serve(app)  # a bare Flask app: --interface auto must pick WSGI
    assert "WSGI" in server.logs.text()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.get("/")
        assert r.status_code == 200 and r.text == "Hello, world!"
        assert r.headers["content-length"] == "13"
        r = client.post("/form", data={"name": "Zo\xe9", "colour": ["red", "blue"]})
        assert r.text == "name=Zo\xe9 colours=red,blue"
        payload = bytes(range(256)) * 1000
        r = client.post("/upload", files={"file": ("data.bin", payload)}, data={"note": "n"})
        assert r.status_code == 200
        import hashlib

        assert r.json() == {
            "filename": "data.bin",
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "note": "n",
        }
        r = client.post("/json", json={"b": 1, "a": [1, 2]})
        assert r.json() == {"received": {"b": 1, "a": [1, 2]}, "keys": ["a", "b"]}
        assert client.post("/json", content=b"not json").status_code == 400
        r = client.get("/stream", params={"n": 3})
        assert r.headers.get("transfer-encoding") == "chunked"
        assert r.text == "".join(f"chunk {i} of 3 for /stream\n" for i in range(3))
        r = client.get("/boom")
        assert r.status_code == 500 and "Something went wrong" in r.text
        r = client.get("/missing")
        assert r.status_code == 404 and r.json() == {"error": "not found", "path": "/missing"}
        assert client.head("/").headers["content-length"] == "13"


def test_flask_chunked_upload_is_read_thanks_to_input_terminated(serve: Serve) -> None:
    from flask import Flask, request

    app = Flask("chunked")

    @app.post("/")
    def read() -> str:
        return str(len(request.get_data()))

    server = serve(app)

    def gen() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    r = httpx.post(server.url + "/", content=gen(), timeout=10)
    assert r.text == "10000"


def test_django_example_end_to_end(serve: Serve) -> None:
    from examples.django_app import application

    server = serve(application)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.get("/hello/asgiserve")
        assert r.status_code == 200 and r.text.startswith("Hello, asgiserve!")
        r = client.post("/", data={"a": ["1", "2"], "b": "x"})
        assert r.json() == {
            "method": "POST",
            "path": "/",
            "script_name": "",
            "body_length": len("a=1&a=2&b=x"),
            "fields": {"a": ["1", "2"], "b": ["x"]},
        }
        assert client.get("/nope").status_code == 404


def test_invalid_start_response_is_500_not_on_the_wire(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/status":
            start_response("200 OK\r\nX-Injected: 1", [])
        elif environ["PATH_INFO"] == "/header":
            start_response("200 OK", [("X-Bad", "v\r\nX-Injected: 1")])
        elif environ["PATH_INFO"] == "/none":
            return [b"forgot start_response"]
        return [b"secret"]

    server = serve(app)
    for path in (b"/status", b"/header", b"/none"):
        with server.raw() as client:
            client.send(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n")
            response = client.read_response()
            assert response.status == 500, path
            assert b"Injected" not in response.head + response.body
            assert b"secret" not in response.body and b"None" not in response.head
    assert "Exception in WSGI application" in server.logs.text()


def test_error_before_and_after_bytes(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        if environ["PATH_INFO"] == "/early":
            raise ValueError("early failure")
        start_response("200 OK", [])
        yield b"partial"
        raise ValueError("late failure")

    server = serve(app)
    with server.raw() as client:
        client.send(b"GET /early HTTP/1.1\r\nHost: h\r\n\r\nGET /early HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response().status == 500
        assert client.read_response().status == 500  # keep-alive survives a clean 500
    with server.raw() as client:
        client.send(b"GET /late HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, _ = client.read_head()
        assert status == 200 and (b"transfer-encoding", b"chunked") in headers
        rest = client.read_until_close()
        assert b"partial" in rest
        assert not rest.endswith(b"0\r\n\r\n")  # never a clean end hiding the truncation
    logs = server.logs.text()
    assert "early failure" in logs and "late failure" in logs


def test_content_length_mismatch_and_head(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path == "/short":  # promises 10, sends 5
            start_response("200 OK", [("Content-Length", "10")])
            return [b"12345"]
        if path == "/long":  # promises 3, sends 5
            start_response("200 OK", [("Content-Length", "3")])
            return [b"12345"]
        start_response("200 OK", [("Content-Length", "5")])
        return [b"12345"]

    server = serve(app)
    with server.raw() as client:
        client.send(b"GET /short HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, _ = client.read_head()
        assert status == 200 and dict(headers)[b"content-length"] == b"10"
        assert client.read_until_close() == b"12345"  # and then the connection is closed
    with server.raw() as client:
        client.send(b"GET /long HTTP/1.1\r\nHost: h\r\n\r\n")
        data = client.read_until_close()
        assert b"12345" not in data  # never more than Content-Length
    with server.raw() as client:
        client.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        head = client.read_response(method=b"HEAD")
        assert head.status == 200 and head.header(b"content-length") == b"5" and head.body == b""
        assert client.read_response().body == b"12345"


def test_http10_streaming_is_close_delimited(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"one "
        yield b"two"

    server = serve(app)
    with server.raw() as client:
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        response = client.read_response()
        assert response.status == 200 and response.body == b"one two"
        assert response.header(b"transfer-encoding") is None


def test_contextvars_do_not_leak_between_keep_alive_requests(serve: Serve) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("leak", default="clean")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        before = var.get()
        var.set("dirty " + environ["PATH_INFO"])
        start_response("200 OK", [])
        return [before.encode()]

    server = serve(app, threads=1)  # one thread: every request runs on the same OS thread
    with server.raw() as client:
        for i in range(3):
            client.send(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
            assert client.read_response().body == b"clean"


def test_file_wrapper_served_through_the_server(serve: Serve, tmp_path: Any) -> None:
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 4000
    path.write_bytes(data)
    opened: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        f = open(path, "rb")
        opened.append(f)
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](f)

    server = serve(app)
    r = httpx.get(server.url + "/", timeout=10)
    assert r.content == data
    with server.raw() as client:
        client.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.read_response(method=b"HEAD").body == b""
    assert all(f.closed for f in opened) and len(opened) == 2


def test_pool_saturation_visible_in_stats_and_debug_log(serve: Serve) -> None:
    release = threading.Event()
    entered = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/block":
            entered.set()
            release.wait(10)
        start_response("200 OK", [])
        return [b"done"]

    wrapped = WSGIMiddleware(app, threads=1)
    server = serve(wrapped)
    results: list[int] = []
    blocker = threading.Thread(target=lambda: results.append(httpx.get(server.url + "/block", timeout=10).status_code))
    blocker.start()
    assert entered.wait(10)
    waiter = threading.Thread(target=lambda: results.append(httpx.get(server.url + "/fast", timeout=10).status_code))
    waiter.start()
    for _ in range(500):  # until the second request is queued behind the busy thread
        if wrapped.stats["queued"] == 1:
            break
        threading.Event().wait(0.01)
    assert wrapped.stats["busy"] == 1 and wrapped.stats["queued"] == 1
    release.set()
    blocker.join(10)
    waiter.join(10)
    assert results == [200, 200]
    assert wrapped.stats["waited"] == 1 and wrapped.stats["max_wait"] > 0
    assert "request waited" in server.logs.text()


def test_bridge_under_uvicorn() -> None:
    """The bridge is a plain ASGI app: it works in another server too (one case, in-process)."""
    import uvicorn  # in the test extra: this must run, never be skipped

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"got "
        yield body

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # listening before the server starts: no readiness race
    port = sock.getsockname()[1]
    config = uvicorn.Config(WSGIMiddleware(app), lifespan="on", log_level="warning", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/", content=b"x" * 100_000, timeout=10)
        assert r.status_code == 200 and r.content == b"got " + b"x" * 100_000
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX only")


def test_sync_vs_async_example_one_app_two_models(serve: Serve) -> None:
    from examples.sync_vs_async import app

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/async").text == "slept 50 ms on the event loop\n"
        r = client.get("/sync")
        assert r.text == "slept 50 ms in a thread\n" and r.headers["content-length"] == "24"
        stats = client.get("/stats").json()
        assert stats["completed"] >= 1 and stats["max_threads"] == 8
        assert client.get("/other").status_code == 404
