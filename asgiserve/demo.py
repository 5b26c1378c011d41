"""The built-in demo app, served when ``asgiserve`` is run without APP.

GET /            a small HTML page that says what is running and how to serve your own app
GET /api         JSON describing the request as the server saw it (the ASGI scope, minus noise)
anything else    404; non-GET/HEAD methods get 405.
"""
from __future__ import annotations

import json
import platform
from typing import Any, Awaitable, Callable

from . import __version__

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asgiserve is running</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem;
         color: #1d2330; background: #fbfbfd; }}
  h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
  code, pre {{ background: #eef0f5; border-radius: 4px; padding: .1rem .35rem; }}
  pre {{ padding: .75rem 1rem; overflow-x: auto; }}
  .muted {{ color: #667; }}
</style>
</head>
<body>
<h1>asgiserve {version} is running</h1>
<p class="muted">Python {python} &middot; this is the built-in demo app.</p>
<p>Serve your own ASGI (FastAPI, Starlette, Django) or WSGI (Flask, Django) app:</p>
<pre>asgiserve main:app              # module main, attribute app
asgiserve main:create_app --factory
asgiserve -b 0.0.0.0:8000 -w 4 main:app</pre>
<p>See what the server saw for this request as JSON: <a href="/api">/api</a></p>
</body>
</html>
"""


def _headers(content_type: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _headers(content_type, body)})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] not in ("GET", "HEAD"):
        body = b"Method Not Allowed\n"
        await send({
            "type": "http.response.start", "status": 405,
            "headers": _headers(b"text/plain; charset=utf-8", body) + [(b"allow", b"GET, HEAD")],
        })
        await send({"type": "http.response.body", "body": body})
        return
    path = scope["path"]
    if path == "/":
        page = PAGE.format(version=__version__, python=platform.python_version())
        await _respond(send, 200, b"text/html; charset=utf-8", page.encode("utf-8"))
    elif path in ("/api", "/api/"):
        info = {
            "server": "asgiserve",
            "version": __version__,
            "method": scope["method"],
            "path": path,
            "query_string": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "scheme": scope["scheme"],
            "client": list(scope["client"]) if scope.get("client") else None,
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        }
        body = json.dumps(info, indent=2).encode("utf-8") + b"\n"
        await _respond(send, 200, b"application/json", body)
    else:
        await _respond(send, 404, b"text/plain; charset=utf-8", b"Not Found\n")
