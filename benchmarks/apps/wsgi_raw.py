"""Raw WSGI hello world."""
from __future__ import annotations

from typing import Any, Callable, Iterable

BODY = b"Hello, world!"
HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
