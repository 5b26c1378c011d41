"""Raw ASGI app for the HTTP/2 comparisons: 'Hello, world!' at any path, 1 MiB at /big."""
from typing import Any

HELLO = b"Hello, world!"
BIG = b"x" * (1024 * 1024)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = BIG if scope["path"] == "/big" else HELLO
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
