"""A Flask (WSGI) app served by asgiserve through its thread-pool bridge.

    asgiserve examples.flask_app:app            # --interface auto picks WSGI
    asgiserve --threads 64 examples.flask_app:app

Routes: GET / (hello), GET|POST /form, POST /upload (multipart file), POST /json,
GET /stream?n=5 (a streamed, chunked response), GET /boom (an error page), GET /missing (404).
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Iterator

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, world!"


@app.route("/form", methods=["GET", "POST"])
def form() -> str:
    if request.method == "POST":
        name = request.form.get("name", "")
        colours = request.form.getlist("colour")
        return f"name={name} colours={','.join(colours)}"
    return (
        '<form method="post"><input name="name"><input type="checkbox" name="colour" value="red">'
        '<input type="checkbox" name="colour" value="blue"><button>Send</button></form>'
    )


@app.post("/upload")
def upload() -> Any:
    file = request.files.get("file")
    if file is None:
        return jsonify(error="no file field"), 400
    digest = hashlib.sha256()
    size = 0
    while True:  # read in pieces: a big upload never sits whole in memory
        block = file.stream.read(64 * 1024)
        if not block:
            break
        digest.update(block)
        size += len(block)
    return jsonify(filename=file.filename, size=size, sha256=digest.hexdigest(), note=request.form.get("note"))


@app.post("/json")
def echo_json() -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="send a JSON object"), 400
    return jsonify(received=data, keys=sorted(data))


@app.get("/stream")
def stream() -> Response:
    count = request.args.get("n", 5, type=int)
    delay = request.args.get("delay", 0.0, type=float)

    @stream_with_context
    def generate() -> Iterator[str]:
        for i in range(count):
            if delay:
                time.sleep(delay)
            yield f"chunk {i} of {count} for {request.path}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("this view always fails")


@app.errorhandler(500)
def server_error(error: Exception) -> Any:
    return "<h1>Something went wrong</h1><p>The error was logged.</p>", 500


@app.errorhandler(404)
def not_found(error: Exception) -> Any:
    return jsonify(error="not found", path=request.path), 404
