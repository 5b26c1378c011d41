"""pre_request / post_request: an ASGI wrapper around the app, installed only when one is set.

WSGI apps run behind the WSGI bridge, which is itself an ASGI app, so one wrapper serves both
interfaces. Hooks run on the worker's event loop: keep them quick (a slow hook holds up every
connection of that worker). Only ``http`` requests are hooked; WebSockets and lifespan pass
through untouched.

What the hooks get (gunicorn's attribute names):
  req:     method, path, query ("" when none), uri (path and query as sent), fragment (""),
           version ((1, 1)), headers ([("USER-AGENT", "curl/8"), ...]: upper-case names, str
           values, as gunicorn's), scheme, remote_addr, peer_addr (the client address, after
           trusted proxy headers), and scope (the ASGI scope).
  environ: a WSGI-style dict for the request, the one gunicorn's ASGI worker passes:
           REQUEST_METHOD, RAW_URI, PATH_INFO, SCRIPT_NAME, QUERY_STRING, SERVER_PROTOCOL,
           REMOTE_ADDR, wsgi.url_scheme, HTTP_* headers, plus asgi.scope.
  resp:    status ("200 OK" for WSGI apps, as gunicorn's sync and gthread workers give it; 200
           for ASGI apps, as its ASGI worker does), status_code (always the int), headers
           ([(name, value)] str pairs), sent (body bytes the app sent), response_length
           (Content-Length, or None). An app that raised before responding has status 500, the
           answer the server sends.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional

from .hooks import status_text

logger = logging.getLogger("asgiserve.error")


class Request:
    __slots__ = ("scope", "method", "path", "query", "uri", "version", "scheme", "remote_addr", "peer_addr")
    fragment = ""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: str = scope["query_string"].decode("latin-1")
        raw = scope.get("raw_path") or self.path.encode("utf-8")
        self.uri = raw.decode("latin-1") + ("?" + self.query if self.query else "")
        major, _, minor = scope["http_version"].partition(".")
        self.version = (int(major), int(minor or 0))
        self.scheme: str = scope.get("scheme", "http")
        client = scope.get("client")
        self.remote_addr = self.peer_addr = tuple(client) if client else None

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1").upper(), v.decode("latin-1")) for k, v in self.scope["headers"]]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response:
    __slots__ = ("status", "status_code", "headers", "sent", "wsgi")

    def __init__(self, wsgi: bool) -> None:
        self.status: Any = None
        self.status_code: Optional[int] = None
        self.headers: list[tuple[str, str]] = []
        self.sent = 0
        self.wsgi = wsgi

    def started(self, code: int, headers: Any = ()) -> None:
        self.status_code = code
        self.status = status_text(code) if self.wsgi else code
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]

    @property
    def response_length(self) -> Optional[int]:
        for name, value in self.headers:
            if name.lower() == "content-length" and value.isdigit():
                return int(value)
        return None

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def environ_for(scope: dict[str, Any], req: Request) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": req.method, "RAW_URI": req.uri, "PATH_INFO": req.path,
        "SCRIPT_NAME": scope.get("root_path", ""), "QUERY_STRING": req.query,
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": req.remote_addr[0] if req.remote_addr else "-",
        "wsgi.url_scheme": req.scheme, "asgi.scope": scope,
    }
    for name, value in req.headers:
        key = "HTTP_" + name.replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _file_bytes(message: dict[str, Any]) -> int:
    count = message.get("count")
    if count is not None:
        return int(count)
    try:
        file = message["file"]
        offset = message.get("offset")
        return int(os.fstat(file.fileno()).st_size - (file.tell() if offset is None else offset))
    except (OSError, ValueError, AttributeError, KeyError):
        return 0


class RequestHooks:
    """ASGI 3 middleware calling pre_request before the app and post_request after it."""

    def __init__(self, app: Any, interface: str, pre: Optional[Callable[..., Any]],
                 post: Optional[Callable[..., Any]], worker: Callable[[], Any]) -> None:
        self.app = app
        self.wsgi = interface == "wsgi"
        self.pre = pre
        self.post = post
        self.worker = worker

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        worker = self.worker()
        req = Request(scope)
        if self.pre is not None:
            _run("pre_request", self.pre, worker, req)
        if self.post is None:
            await self.app(scope, receive, send)
            return
        resp = Response(self.wsgi)

        async def hooked_send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                resp.sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                resp.started(message["status"], message.get("headers", ()))
            elif kind == "http.response.zerocopysend":
                resp.sent += _file_bytes(message)
            await send(message)

        try:
            await self.app(scope, receive, hooked_send)
        except BaseException:
            if resp.status_code is None:
                resp.started(500)
            raise
        finally:
            _run("post_request", self.post, worker, req, environ_for(scope, req), resp)


def _run(name: str, fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:
        logger.exception("The %s hook raised %s: %s", name, type(exc).__name__, exc)
