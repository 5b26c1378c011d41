"""ASGI lifespan through a real Server: modes auto/on/off, startup/shutdown complete and failed,
timeouts, and the lifespan state shallow-copied into every request's scope."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

import httpx
import pytest

from asgiserve.config import Config
from asgiserve.errors import LifespanError
from asgiserve.server import Server
from tests.support import LogCapture, RunningServer

Serve = Callable[..., RunningServer]


class LifespanApp:
    """Configurable lifespan behaviour; HTTP requests answer with a view of scope['state']."""

    def __init__(
        self,
        startup: str = "complete",  # complete | failed | raise | hang | return
        shutdown: str = "complete",  # complete | failed | raise | hang
        message: str = "",
    ) -> None:
        self.startup = startup
        self.shutdown = shutdown
        self.message = message
        self.events: list[str] = []
        self.lifespan_scopes: list[dict[str, Any]] = []
        self.shared: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        assert scope["type"] == "http"
        state = scope["state"]
        self.events.append("request")
        body = repr(sorted(state.items(), key=lambda kv: kv[0])).encode()
        # Mutations: a new key and a rebinding must not leak; the shared object is shared.
        state["added_by_request"] = scope["path"]
        state["name"] = "changed"
        if "shared" in state:
            state["shared"].append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.lifespan_scopes.append(scope)
        message = await receive()
        assert message["type"] == "lifespan.startup"
        self.events.append("startup")
        if self.startup == "raise":
            raise RuntimeError(self.message or "startup exploded")
        if self.startup == "hang":
            await asyncio.Event().wait()
        if self.startup == "return":
            return
        if self.startup == "failed":
            await send({"type": "lifespan.startup.failed", "message": self.message})
            return
        scope["state"]["name"] = "lifespan"
        scope["state"]["shared"] = self.shared
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        self.events.append("shutdown")
        if self.shutdown == "raise":
            raise RuntimeError(self.message or "shutdown exploded")
        if self.shutdown == "hang":
            await asyncio.Event().wait()
        if self.shutdown == "failed":
            await send({"type": "lifespan.shutdown.failed", "message": self.message})
            return
        await send({"type": "lifespan.shutdown.complete"})


def stop(server: RunningServer, timeout: float = 10.0) -> None:
    server.server.request_shutdown()
    server.thread.join(timeout)
    assert not server.thread.is_alive(), "server did not stop"


def get(server: RunningServer, path: str = "/") -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        return client.get(path)


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_and_shutdown_complete(serve: Serve, mode: str) -> None:
    app = LifespanApp()
    server = serve(app, lifespan=mode)
    assert app.events == ["startup"]  # startup finished before the server accepted anything
    scope = app.lifespan_scopes[0]
    assert scope["type"] == "lifespan"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["asgi"].get("spec_version", "2.0"), str)
    assert isinstance(scope["state"], dict)
    assert get(server).status_code == 200
    stop(server)
    assert app.events == ["startup", "request", "shutdown"]
    assert not server.error
    assert "shutdown complete" in server.logs.text().lower()


def test_lifespan_off_never_calls_the_app_for_lifespan(serve: Serve) -> None:
    app = LifespanApp(startup="raise")
    server = serve(app, lifespan="off")
    assert app.events == []
    response = get(server)
    assert response.status_code == 200 and response.content == b"[]"  # nothing from a startup
    stop(server)
    assert app.lifespan_scopes == []


def test_lifespan_off_state_is_an_empty_dict(serve: Serve) -> None:
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        seen.append(scope.get("state"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, lifespan="off")
    assert get(server).status_code == 200
    assert seen[0] in (None, {})


def serve_expecting_failure(app: Any, http_impl: str, **options: Any) -> BaseException:
    """Run Server.serve() for an app whose startup must fail; returns what serve() raised.

    Runs the server directly rather than through the ``serve`` fixture, whose readiness
    signal can fire before a startup error is recorded. Bounded: a server that starts
    serving instead of failing is cut off and the test fails.
    """
    config = Config(app=app, host="127.0.0.1", port=0, http=http_impl, log_level="debug", **options)
    server = Server(config)

    async def main() -> None:
        await asyncio.wait_for(server.serve(), 10)

    capture = LogCapture()
    logger = logging.getLogger("asgiserve")
    logger.addHandler(capture)
    try:
        with pytest.raises(BaseException) as info:
            asyncio.run(main())
    finally:
        logger.removeHandler(capture)
    assert not server.started.is_set(), "the server started serving despite a failed startup"
    # The app never started, so nothing may claim its *shutdown* failed.
    assert "shutdown failed" not in capture.text().lower(), capture.text()
    return info.value


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_raises_with_app_message(http_impl: str, mode: str) -> None:
    app = LifespanApp(startup="failed", message="database unreachable")
    error = serve_expecting_failure(app, http_impl, lifespan=mode)
    assert isinstance(error, LifespanError), repr(error)
    assert "database unreachable" in str(error)
    assert error.exit_code == 3
    assert app.events == ["startup"]  # no shutdown for an app that never started


def test_startup_exception_under_on_is_fatal(http_impl: str) -> None:
    app = LifespanApp(startup="raise", message="no config file")
    error = serve_expecting_failure(app, http_impl, lifespan="on")
    assert isinstance(error, LifespanError), repr(error)
    assert "no config file" in str(error)


def test_startup_timeout(http_impl: str) -> None:
    app = LifespanApp(startup="hang")
    error = serve_expecting_failure(app, http_impl, lifespan="on", lifespan_startup_timeout=0.2)
    assert isinstance(error, LifespanError), repr(error)


def test_startup_timeout_under_auto(http_impl: str) -> None:
    """A hanging startup is not 'unsupported': it is a startup that never finished."""
    app = LifespanApp(startup="hang")
    error = serve_expecting_failure(app, http_impl, lifespan="auto", lifespan_startup_timeout=0.2)
    assert isinstance(error, LifespanError), repr(error)


def plain_http_app(unsupported: str) -> Any:
    """An app written without lifespan support, the way many are."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if unsupported == "raise":
                raise ValueError(f"unsupported scope type {scope['type']}")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served"})

    return app


@pytest.mark.parametrize("unsupported", ["raise", "return"])
def test_unsupported_lifespan_under_auto_still_serves(serve: Serve, unsupported: str) -> None:
    server = serve(plain_http_app(unsupported), lifespan="auto")
    response = get(server)
    assert response.status_code == 200 and response.content == b"served"
    stop(server)
    assert not server.error


@pytest.mark.parametrize("unsupported", ["raise", "return"])
def test_unsupported_lifespan_under_on_is_an_error(http_impl: str, unsupported: str) -> None:
    error = serve_expecting_failure(plain_http_app(unsupported), http_impl, lifespan="on")
    assert isinstance(error, LifespanError), repr(error)


@pytest.mark.parametrize("how", ["failed", "raise"])
def test_shutdown_failed_is_logged_and_server_stops(serve: Serve, how: str) -> None:
    app = LifespanApp(shutdown=how, message="could not flush cache")
    server = serve(app, lifespan="on")
    assert get(server).status_code == 200
    stop(server)
    assert app.events[-1] == "shutdown"
    assert "could not flush cache" in server.logs.text()


def test_shutdown_timeout(serve: Serve) -> None:
    app = LifespanApp(shutdown="hang")
    server = serve(app, lifespan="on", lifespan_shutdown_timeout=0.2)
    stop(server)
    assert app.events[-1] == "shutdown"


def test_state_is_shallow_copied_per_request(serve: Serve) -> None:
    app = LifespanApp()
    server = serve(app, lifespan="on")
    with httpx.Client(base_url=server.url, timeout=5) as client:
        first = client.get("/one").content
        second = client.get("/two").content
        third = client.get("/three").content
    # Each request sees the startup values: keys added or rebound by earlier requests are gone...
    assert b"added_by_request" not in first + second + third
    assert b"'name', 'lifespan'" in first and b"'name', 'lifespan'" in third
    assert b"changed" not in first + second + third
    # ...but objects inside the state are the same objects (a shallow copy, not a deep one).
    assert b"['/one']" in second
    assert b"['/one', '/two']" in third
    assert app.shared == ["/one", "/two", "/three"]


def test_state_copies_are_independent_for_concurrent_requests(serve: Serve) -> None:
    states: list[dict[str, Any]] = []
    gate: Optional[asyncio.Event] = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal gate
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["k"] = "v"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if gate is None:
            gate = asyncio.Event()
        states.append(scope["state"])
        if len(states) == 2:
            gate.set()
        await asyncio.wait_for(gate.wait(), 5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, lifespan="on")
    a, b = server.raw(), server.raw()
    with a, b:
        a.send(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
        b.send(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        assert a.read_response().status == 200
        assert b.read_response().status == 200
    assert states[0] == {"k": "v"} and states[1] == {"k": "v"}
    assert states[0] is not states[1]
