"""Access log lines and proxy headers through the real server (both parsers)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

from tests.support import RunningServer

Serve = Callable[..., RunningServer]


async def whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"client": scope["client"], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"X-Trace", b"t-1")]})
    await send({"type": "http.response.body", "body": body})


def get(server: RunningServer, target: bytes, *headers: bytes) -> tuple[int, dict[str, Any]]:
    with server.raw() as raw:
        raw.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n")
        response = raw.read_response()
    return response.status, json.loads(response.body)


def access_lines(server: RunningServer) -> list[str]:
    return [r.getMessage() for r in server.logs.records if r.name == "asgiserve.access"]


def test_proxy_headers_from_trusted_loopback(serve: Serve) -> None:
    server = serve(whoami)
    status, seen = get(server, b"/", b"X-Forwarded-For: 6.6.6.6, 198.51.100.7", b"X-Forwarded-Proto: https")
    assert status == 200
    assert seen == {"client": ["198.51.100.7", 0], "scheme": "https"}
    status, seen = get(server, b"/", b'Forwarded: for="[2001:db8::5]:4711";proto=https')
    assert seen == {"client": ["2001:db8::5", 4711], "scheme": "https"}


def test_proxy_headers_ignored_from_untrusted_peer(serve: Serve) -> None:
    server = serve(whoami, forwarded_allow_ips="10.0.0.1")
    _, seen = get(server, b"/", b"X-Forwarded-For: 198.51.100.7", b"X-Forwarded-Proto: https")
    assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"


def test_no_proxy_headers_flag(serve: Serve) -> None:
    server = serve(whoami, proxy_headers=False)
    _, seen = get(server, b"/", b"X-Forwarded-For: 198.51.100.7")
    assert seen["client"][0] == "127.0.0.1"


def test_unix_socket_peer_is_trusted(serve: Serve, tmp_path: Path) -> None:
    server = serve(whoami, uds=str(tmp_path / "p.sock"), forwarded_allow_ips="10.9.9.9")
    _, seen = get(server, b"/", b"X-Forwarded-For: 198.51.100.7", b"X-Forwarded-Proto: https")
    assert seen == {"client": ["198.51.100.7", 0], "scheme": "https"}


def test_default_access_line(serve: Serve) -> None:
    server = serve(whoami)
    get(server, b"/path?q=1")
    server.stop()
    (line,) = access_lines(server)
    assert line.startswith("127.0.0.1:") and ' - "GET /path?q=1 HTTP/1.1" 200 ' in line
    assert line.endswith("ms")


def test_gunicorn_format_and_escaping(serve: Serve) -> None:
    server = serve(whoami, access_log_format='%(h)s "%(r)s" %(s)s %(U)s %({x-trace}o)s %({user-agent}i)s')
    get(server, b"/a%0d%0aforged%20line%1b?x=%0a", b"User-Agent: probe\x85")
    server.stop()
    (line,) = access_lines(server)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x85" not in line
    assert line == '127.0.0.1 "GET /a%0d%0aforged%20line%1b?x=%0a HTTP/1.1" 200 /a\\r\\nforged line\\x1b t-1 probe\\x85'


def test_no_access_log(serve: Serve) -> None:
    server = serve(whoami, access_log=False)
    get(server, b"/")
    server.stop()
    assert access_lines(server) == []


def test_access_log_follows_logger_level(serve: Serve) -> None:
    logging.getLogger("asgiserve.access").setLevel(logging.WARNING)
    try:
        server = serve(whoami)
        get(server, b"/")
        server.stop()
    finally:
        logging.getLogger("asgiserve.access").setLevel(logging.NOTSET)
    assert access_lines(server) == []
