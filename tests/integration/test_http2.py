"""HTTP/2 (--http2): h2c with prior knowledge and h2 over TLS on the same port as HTTP/1.1, with
real clients (httpx, curl, nghttp, h2load) and a raw frame client (tests/h2client.py) for flow
control, floods and shutdown. HTTP/2 does not use the HTTP/1.1 parsers, but every connection starts
in the HTTP/1.1 protocol of the parser in use, which sniffs the preface (or sees ALPN) and hands
it over: so these tests, like every HTTP test, run on both parsers (the ``serve`` fixture)."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import h2.events
import h2.settings
import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame, SettingsFrame

from tests.h2client import H2Client, frame_bytes
from tests.support import RunningServer

Serve = Callable[..., RunningServer]

pytestmark = pytest.mark.timeout(60)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body; answers with version, method, path, body length and host."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    host = dict(scope["headers"]).get(b"host", b"").decode()
    text = f"{scope['http_version']} {scope['method']} {scope['path']}?{scope['query_string'].decode()} {size} {host}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text.encode()})


def big_app(size: int) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        piece = bytes(range(256)) * 256  # 64 KiB
        left = size
        while left:
            n = min(left, len(piece))
            left -= n
            await send({"type": "http.response.body", "body": piece[:n], "more_body": left > 0})
    return app


def test_h2c_prior_knowledge_and_http11_on_one_port(serve: Serve) -> None:
    srv = serve(echo_app, http2=True)
    with httpx.Client(http1=False, http2=True, base_url=srv.url) as client:
        r = client.get("/a?b=1")
        assert r.http_version == "HTTP/2" and r.status_code == 200
        assert r.text == f"2 GET /a?b=1 0 127.0.0.1:{srv.port}"
        assert r.headers["server"] == "asgiserve" and r.headers["content-length"] == str(len(r.text))
        r = client.post("/up", content=b"x" * 3_000_000)  # > both windows: acknowledged as the app reads
        assert r.text.startswith("2 POST /up? 3000000")
        assert client.head("/a").content == b""
    with httpx.Client(base_url=srv.url) as client:  # HTTP/1.1 on the same port, unchanged
        r = client.get("/h1")
        assert r.http_version == "HTTP/1.1" and r.text.startswith("1.1 GET /h1")
    with srv.raw() as raw:
        raw.send(b"PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")  # starts like the preface
        assert raw.read_response().body == b"1.1 PUT /p? 2 x"
    assert "HTTP/2\" 200" in srv.logs.text()


def test_preface_split_byte_by_byte(serve: Serve) -> None:
    srv = serve(echo_app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        pass  # just checks the client connects
    import socket

    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h"),
                          (b":path", b"/split")], end_stream=True)
    data = conn.data_to_send()
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        for i in range(30):
            sock.sendall(data[i:i + 1])
            time.sleep(0.002)
        sock.sendall(data[30:])
        got = b""
        events: list[Any] = []
        while not any(isinstance(e, h2.events.StreamEnded) for e in events):
            chunk = sock.recv(65536)
            assert chunk
            events += conn.receive_data(chunk)
        body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        assert body == b"2 GET /split? 0 h"


def test_http2_off_by_default(serve: Serve) -> None:
    srv = serve(echo_app)
    with srv.raw() as raw:
        raw.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        response = raw.read_response()
        assert response.status in (400, 505)


def test_settings_advertised(serve: Serve) -> None:
    srv = serve(echo_app, http2=True, http2_max_concurrent_streams=7, http2_max_frame_size=32768,
                http2_initial_window_size=100000)
    with H2Client(srv.host, srv.port) as client:
        assert client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        changed = next(e for e in client.events if isinstance(e, h2.events.RemoteSettingsChanged)).changed_settings
        codes = h2.settings.SettingCodes
        assert changed[codes.MAX_CONCURRENT_STREAMS].new_value == 7
        assert changed[codes.MAX_FRAME_SIZE].new_value == 32768
        assert changed[codes.INITIAL_WINDOW_SIZE].new_value == 100000


def test_many_concurrent_streams_on_one_connection(serve: Serve) -> None:
    peak = [0, 0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        peak[0] += 1
        peak[1] = max(peak[1], peak[0])
        await asyncio.sleep(0.05)
        peak[0] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode() + b"|" + str(scope["client"]).encode()})

    async def main(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, base_url=url) as client:
            return await asyncio.gather(*(client.get(f"/{i}") for i in range(300)))

    srv = serve(app, http2=True, http2_max_concurrent_streams=50)
    responses = asyncio.run(main(srv.url))
    assert [r.text.split("|")[0] for r in responses] == [f"/{i}" for i in range(300)]
    assert len({r.text.split("|")[1] for r in responses}) == 1  # one connection
    assert 10 < peak[1] <= 50


def test_large_download_with_flow_control(serve: Serve) -> None:
    size = 8 * 1024 * 1024 + 17
    srv = serve(big_app(size), http2=True)
    with httpx.Client(http1=False, http2=True, base_url=srv.url, timeout=30) as client:
        r = client.get("/big")
        assert len(r.content) == size and r.content[:512] == bytes(range(256)) * 2


def test_send_waits_for_the_window_then_stalled_client_is_closed(serve: Serve) -> None:
    sent = [0]
    finished = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(64):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                sent[0] += 65536
            await send({"type": "http.response.body", "body": b""})
        finally:
            finished.set()

    srv = serve(app, http2=True, http2_stall_timeout=1.0, timeout_keep_alive=30)
    with H2Client(srv.host, srv.port) as client:
        client.auto_ack = False  # the client's windows (64 KiB) never open
        client.request("/slow")
        client.until(lambda c: False, timeout=0.5)
        assert sent[0] <= 4 * 65536  # send() waited: the server did not buffer the 4 MiB response
        assert client.until(lambda c: c.closed, timeout=5)  # closed after --http2-stall-timeout
    assert finished.wait(5)
    assert "did not take response data" in srv.logs.text()


def test_request_body_acknowledged_only_as_the_app_reads(serve: Serve) -> None:
    release = threading.Event()
    received = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while not release.is_set():
            await asyncio.sleep(0.01)
        while True:
            message = await receive()
            received[0] += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % received[0]})

    window = 65535
    srv = serve(app, http2=True, http2_initial_window_size=window, http2_connection_window_size=window)
    with H2Client(srv.host, srv.port) as client:
        client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        sid = client.request("/up", "POST", end=False)
        total = 1024 * 1024
        sent = 0

        def push() -> None:
            nonlocal sent
            while sent < total:
                room = min(client.conn.local_flow_control_window(sid), total - sent, 16384)
                if room <= 0:
                    return
                client.conn.send_data(sid, b"u" * room, end_stream=sent + room == total)
                sent += room
            client.flush()

        push()
        client.flush()
        client.until(lambda c: False, timeout=0.5)
        push()
        assert sent <= window  # nothing acknowledged while the app does not read
        release.set()
        deadline = time.monotonic() + 10
        while sent < total and time.monotonic() < deadline:
            client.receive(1)
            push()
            client.flush()
        assert sent == total
        status, _, body = client.response(sid, timeout=10)
        assert status == 200 and body == b"%d" % total


def test_rapid_reset_is_bounded(serve: Serve) -> None:
    running = [0, 0]
    started = [0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started[0] += 1
        running[0] += 1
        running[1] = max(running[1], running[0])
        try:
            await asyncio.sleep(0.3)  # ignores the disconnect for a while, like a busy handler
        finally:
            running[0] -= 1

    srv = serve(app, http2=True, http2_max_concurrent_streams=10)
    with H2Client(srv.host, srv.port) as client:
        for _ in range(500):
            sid = client.request("/r")
            client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        client.until(lambda c: c.closed or c.goaway is not None, timeout=2)
    time.sleep(0.5)
    assert running[1] <= 10  # app tasks bounded by the stream limit, reset streams included
    assert started[0] < 500
    assert "Traceback" not in srv.logs.text()


@pytest.mark.parametrize("kind", ["ping", "settings", "empty-data"])
def test_control_frame_floods_get_enhance_your_calm(serve: Serve, kind: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":  # holds its stream open until the connection ends
            while (await receive())["type"] != "http.disconnect":
                pass

    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        sid = client.request("/", "POST", end=False) if kind == "empty-data" else 0
        if kind == "ping":
            frame = frame_bytes(PingFrame(0, opaque_data=b"12345678"))
        elif kind == "settings":
            frame = frame_bytes(SettingsFrame(0, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0}))
        else:
            frame = frame_bytes(DataFrame(sid, data=b""))
        try:
            client.send_raw(frame * 3000)
        except OSError:
            pass
        assert client.until(lambda c: c.goaway is not None or c.closed, timeout=5)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert "HTTP/2 flood" in srv.logs.text()


def test_continuation_flood_is_bounded(serve: Serve) -> None:
    srv = serve(echo_app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        headers = HeadersFrame(1, data=b"\x82\x84\x86", flags=[])  # :method GET, :path /, :scheme http
        junk = ContinuationFrame(1, data=b"\x00" * 16000)
        try:
            client.send_raw(frame_bytes(headers) + frame_bytes(junk) * 200)
        except OSError:
            pass
        assert client.until(lambda c: c.goaway is not None or c.closed, timeout=5)
        assert client.goaway is None or client.goaway.error_code != ErrorCodes.NO_ERROR
    text = srv.logs.text()
    assert "HTTP/2 protocol error" in text and "Traceback" not in text


def test_graceful_shutdown_finishes_streams_and_refuses_new_ones(serve: Serve) -> None:
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    srv = serve(app, http2=True, timeout_graceful_shutdown=10)
    with H2Client(srv.host, srv.port) as client:
        sids = [client.request(f"/s{i}") for i in range(5)]
        client.until(lambda c: False, timeout=0.3)
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        assert client.until(lambda c: c.goaway is not None, timeout=5)
        assert client.goaway.last_stream_id == sids[-1] and client.goaway.error_code == ErrorCodes.NO_ERROR
        late = client.request("/late")  # sent after the GOAWAY: refused, safe to retry
        gate.set()
        for i, sid in enumerate(sids):
            status, _, body = client.response(sid)
            assert (status, body) == (200, f"/s{i}".encode())
        with pytest.raises(ConnectionError, match="REFUSED_STREAM"):
            client.response(late)
        assert client.until(lambda c: c.closed, timeout=5)
        stopper.join(10)
        assert not srv.thread.is_alive()


def test_flask_and_starlette_over_http2(serve: Serve) -> None:
    from flask import Flask, request
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    flask_app = Flask(__name__)

    @flask_app.route("/f", methods=["GET", "POST"])
    def f() -> str:
        return f"flask {request.environ['SERVER_PROTOCOL']} {len(request.get_data())} {request.host}"

    async def s(request: Request) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(f"starlette {request.scope['http_version']} {len(body)} {request.url}")

    star = Starlette(routes=[Route("/s", s, methods=["GET", "POST"])])
    for app, path, expect in ((flask_app, "/f", "flask HTTP/2 300000 127.0.0.1:"), (star, "/s", "starlette 2 300000 http://127.0.0.1:")):
        srv = serve(app, http2=True)
        with httpx.Client(http1=False, http2=True, base_url=srv.url) as client:
            r = client.post(path, content=b"z" * 300000)
            assert r.http_version == "HTTP/2" and r.status_code == 200, r.text
            assert r.text.startswith(expect), r.text


def test_app_errors_over_http2(serve: Serve) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"short", "more_body": False})

    srv = serve(app, http2=True)
    with H2Client(srv.host, srv.port) as client:
        status, _, body = client.response(client.request("/boom"))
        assert status == 500 and body == b"Internal Server Error\n"
        with pytest.raises(ConnectionError, match="INTERNAL_ERROR"):
            client.response(client.request("/short"))  # truncated: the stream is reset, not the connection
        status, _, _ = client.response(client.request("/boom"))
        assert status == 500
    assert "Exception in ASGI application" in srv.logs.text()


def test_h2c_with_curl_nghttp_and_h2load(serve: Serve) -> None:
    curl, nghttp, h2load = shutil.which("curl"), shutil.which("nghttp"), shutil.which("h2load")
    if not (curl and nghttp and h2load):
        pytest.skip("needs curl and nghttp2-client (nghttp, h2load); .ci/run installs them")
    srv = serve(echo_app, http2=True, access_log=False)
    out = subprocess.run([curl, "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", f"{srv.url}/c?q=1"],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == f"2 GET /c?q=1 0 127.0.0.1:{srv.port} 2", out
    out = subprocess.run([nghttp, "-n", "-s", "-m", "20", f"{srv.url}/n"], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, out
    out = subprocess.run([h2load, "-n", "2000", "-c", "2", "-m", "100", f"{srv.url}/load"],
                         capture_output=True, text=True, timeout=60)
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    srv = serve(big_app(1024 * 1024), http2=True, access_log=False)
    out = subprocess.run([h2load, "-n", "50", "-c", "1", "-m", "10", f"{srv.url}/big"],
                         capture_output=True, text=True, timeout=60)
    assert "50 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout


def test_http2_needs_h2(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from asgiserve.config import Config
    from asgiserve.errors import ConfigError

    monkeypatch.setitem(sys.modules, "h2", None)
    with pytest.raises(ConfigError, match=r"pip install 'asgiserve\[http2\]'"):
        Config(app="x:y", http2=True)
    Config(app="x:y")  # off: h2 is not needed


def test_tls_alpn_h2_with_httpx_and_curl(serve: Serve, tmp_path: Path) -> None:
    from tests.integration.test_tls import Certs

    certs = Certs(tmp_path)
    srv = serve(echo_app, http2=True, ssl_certfile=str(certs.server_pem))
    url = f"https://127.0.0.1:{srv.port}"
    with httpx.Client(http2=True, verify=certs.client_context(), base_url=url) as client:
        r = client.get("/t")
        assert r.http_version == "HTTP/2" and r.text == f"2 GET /t? 0 127.0.0.1:{srv.port}"
    with httpx.Client(http2=False, verify=certs.client_context(), base_url=url) as client:
        r = client.get("/t1")
        assert r.http_version == "HTTP/1.1" and r.text.startswith("1.1 GET /t1")
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run([curl, "-sS", "--http2", "--cacert", str(certs.ca_pem), "-w", " %{http_version}",
                              f"{url}/c"], capture_output=True, text=True, timeout=20)
        assert out.stdout == f"2 GET /c? 0 127.0.0.1:{srv.port} 2", out
    srv = serve(echo_app, ssl_certfile=str(certs.server_pem))  # --no-http2: ALPN offers http/1.1 only
    with httpx.Client(http2=True, verify=certs.client_context(), base_url=f"https://127.0.0.1:{srv.port}") as client:
        assert client.get("/").http_version == "HTTP/1.1"


def test_request_body_limit_over_http2(serve: Serve) -> None:
    srv = serve(echo_app, http2=True, limit_request_body=100_000)
    with H2Client(srv.host, srv.port) as client:
        status, _, body = client.response(
            client.request("/declared", "POST", body=b"d" * 1000, headers=[(b"content-length", b"200000")],
                           end=False))
        assert status == 413 and body == b"Request body too large\n"
        sid = client.request("/counted", "POST", end=False)
        for _ in range(8):  # 128 KiB, no length declared: counted as it arrives
            client.conn.send_data(sid, b"c" * 16384)
        client.flush()
        status, _, body = client.response(sid)
        assert status == 413
        status, _, body = client.response(client.request("/after", "POST", body=b"ok"))
        assert (status, body) == (200, f"2 POST /after? 2 {srv.host}:{srv.port}".encode())
    assert "Traceback" not in srv.logs.text()


def test_wsgi_streaming_both_ways_over_http2(serve: Serve) -> None:
    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        stream = environ["wsgi.input"]
        size = 0
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            size += len(chunk)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("X-Upload", str(size))])
        return (b"w" * 65536 for _ in range(64))  # 4 MiB, streamed with no length

    srv = serve(wsgi_app, http2=True, interface="wsgi")
    with httpx.Client(http1=False, http2=True, base_url=srv.url, timeout=30) as client:
        r = client.post("/w", content=b"u" * (2 * 1024 * 1024 + 3))
        assert r.http_version == "HTTP/2" and r.headers["x-upload"] == str(2 * 1024 * 1024 + 3)
        assert len(r.content) == 4 * 1024 * 1024 and "content-length" not in r.headers


def test_stalled_request_body_gets_408_per_stream(serve: Serve) -> None:
    srv = serve(echo_app, http2=True, timeout_request_body=1.0)
    with H2Client(srv.host, srv.port) as client:
        stalled = client.request("/stalled", "POST", body=b"part", end=False)
        status, _, body = client.response(client.request("/other", "POST", body=b"ab"))
        assert status == 200  # the connection serves other streams meanwhile
        status, _, body = client.response(stalled, timeout=5)
        assert status == 408 and body == b"Request body timeout\n"
        status, _, _ = client.response(client.request("/after"))
        assert status == 200


def test_shutdown_with_streams_in_flight_nghttp(serve: Serve) -> None:
    nghttp = shutil.which("nghttp")
    if not nghttp:
        pytest.skip("needs nghttp (nghttp2-client); .ci/run installs it")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(1.0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    srv = serve(app, http2=True, timeout_graceful_shutdown=10)
    urls = [f"{srv.url}/n{i}" for i in range(10)]
    client = subprocess.Popen([nghttp, "-n", "-s", *urls], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    deadline = time.monotonic() + 5
    while srv.server.total_requests < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.stop()  # GOAWAY now; the ten accepted streams still finish
    out, _ = client.communicate(timeout=20)
    assert client.returncode == 0, out
    import re

    assert sorted(re.findall(r" 200 +3 (/n\d)$", out, re.M)) == sorted(f"/n{i}" for i in range(10)), out
