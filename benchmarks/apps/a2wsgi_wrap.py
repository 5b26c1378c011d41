"""uvicorn + a2wsgi: a factory wrapping the WSGI app named by $BENCH_WSGI_APP in a2wsgi's middleware,
with $BENCH_THREADS threads, so uvicorn serves exactly the WSGI callable the other servers serve."""
from __future__ import annotations

import importlib
import os
from typing import Any


def make() -> Any:
    from a2wsgi import WSGIMiddleware

    module, _, attr = os.environ["BENCH_WSGI_APP"].partition(":")
    wsgi = getattr(importlib.import_module(module), attr)
    return WSGIMiddleware(wsgi, workers=int(os.environ.get("BENCH_THREADS", "32")))
