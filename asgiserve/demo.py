"""The built-in demo app, served when ``asgiserve`` is run without APP.

GET /            a small HTML page that says what is running and how to serve your own app,
                 with a live WebSocket echo panel (inline JS, no external resources)
GET /api         JSON describing the request as the server saw it (the ASGI scope, minus noise)
WebSocket /ws    echoes every text or binary message until the client disconnects
anything else    404; non-GET/HEAD methods get 405; a WebSocket to another path is refused (403).
"""
from __future__ import annotations

import json
import platform
from typing import Any, Awaitable, Callable

from . import __version__

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

WS_PATH = "/ws"

# Inserted into PAGE through str.format, so its braces are not doubled.
SCRIPT = """
(function () {
  var status = document.getElementById("ws-status"), log = document.getElementById("ws-log");
  var form = document.getElementById("ws-form"), input = document.getElementById("ws-input");
  var send = document.getElementById("ws-send"), again = document.getElementById("ws-reconnect");
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  var socket = null;
  function state(text, name) { status.textContent = text; status.className = "badge " + name; }
  function show(who, text) {
    var line = document.createElement("li");
    line.className = who;
    line.textContent = text;
    log.appendChild(line);
    log.hidden = false;
    log.scrollTop = log.scrollHeight;
  }
  function connect() {
    state("connecting", "wait");
    again.hidden = true;
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () { state("connected", "open"); send.disabled = false; input.focus(); };
    socket.onmessage = function (event) {
      show("in", typeof event.data === "string" ? event.data : "[" + event.data.byteLength + " bytes]");
    };
    socket.onclose = function (event) {
      state("closed" + (event.code ? " (" + event.code + ")" : ""), "shut");
      send.disabled = true;
      again.hidden = false;
    };
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.value || !socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(input.value);
    show("out", input.value);
    input.value = "";
  });
  again.addEventListener("click", connect);
  document.getElementById("ws-url").textContent = url;
  connect();
})();
"""

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
  h2 {{ font-size: 1.15rem; margin: 0 0 .5rem; display: flex; align-items: center; gap: .6rem; }}
  code, pre {{ background: #eef0f5; border-radius: 4px; padding: .1rem .35rem; }}
  pre {{ padding: .75rem 1rem; overflow-x: auto; }}
  .muted {{ color: #667; }}
  .panel {{ border: 1px solid #dde0e8; border-radius: 8px; padding: 1rem; background: #fff; margin-top: 1.5rem; }}
  .panel p {{ margin: 0 0 .75rem; font-size: .9rem; }}
  .badge {{ font-size: .75rem; font-weight: 600; border-radius: 999px; padding: .1rem .6rem; }}
  .badge.wait {{ background: #fff4d6; color: #8a5a00; }}
  .badge.open {{ background: #dcf5e3; color: #17663a; }}
  .badge.shut {{ background: #fbe1e1; color: #9b1c1c; }}
  #ws-form {{ display: flex; gap: .5rem; }}
  #ws-input {{ flex: 1; min-width: 0; font: inherit; padding: .35rem .6rem; border: 1px solid #c8ccd6;
              border-radius: 6px; }}
  button {{ font: inherit; padding: .35rem .9rem; border: 0; border-radius: 6px; background: #3556d8;
           color: #fff; cursor: pointer; }}
  button:disabled {{ background: #a9b4dc; cursor: default; }}
  button.link {{ background: none; color: #3556d8; padding: 0; font-size: .85rem; }}
  #ws-log {{ list-style: none; margin: .75rem 0 0; padding: .5rem .75rem; max-height: 12rem; overflow-y: auto;
            background: #f4f5f9; border-radius: 6px; font: .9rem/1.6 ui-monospace, monospace; }}
  #ws-log li {{ white-space: pre-wrap; overflow-wrap: anywhere; padding-left: 1.5em; text-indent: -1.5em; }}
  #ws-log .out {{ color: #556; }}
  #ws-log .out::before {{ content: "\\2192  "; color: #667; }}
  #ws-log .in::before {{ content: "\\2190  "; color: #17663a; }}
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
<section class="panel" id="ws-panel">
<h2>WebSocket echo <span id="ws-status" class="badge wait">connecting</span>
<button type="button" id="ws-reconnect" class="link" hidden>reconnect</button></h2>
<p class="muted">Messages go to <code id="ws-url">{ws_path}</code> and come straight back.</p>
<form id="ws-form">
<input id="ws-input" type="text" placeholder="Type a message" autocomplete="off" aria-label="Message">
<button id="ws-send" type="submit" disabled>Send</button>
</form>
<ul id="ws-log" aria-live="polite" hidden></ul>
</section>
<script>{script}</script>
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


async def _websocket(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Echo on /ws; any other path is closed before accept, which the server answers with 403."""
    if (await receive())["type"] != "websocket.connect":
        return
    if scope["path"] != WS_PATH:
        await send({"type": "websocket.close", "code": 1000})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":  # websocket.disconnect
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
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
        page = PAGE.format(version=__version__, python=platform.python_version(), ws_path=WS_PATH, script=SCRIPT)
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
