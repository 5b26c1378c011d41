"""Shared fixtures: every HTTP test runs once per parser backend."""
from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any, Callable, Iterator

import pytest

from tests.support import RunningServer, running_server

PARSERS = ["httptools", "h11"]


@pytest.fixture(params=PARSERS)
def http_impl(request: pytest.FixtureRequest) -> str:
    """The parser backend under test; parametrizes every test that uses it."""
    return str(request.param)


@pytest.fixture
def serve(http_impl: str) -> Iterator[Callable[..., RunningServer]]:
    """serve(app, **config) -> RunningServer on 127.0.0.1:0 with the current parser; stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(app: Any, **options: Any) -> RunningServer:
            options.setdefault("http", http_impl)
            return stack.enter_context(running_server(app, **options))

        yield start


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """Run `async def` tests on a fresh event loop (no plugin needed), bounded by pytest-timeout."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}
        asyncio.run(pyfuncitem.obj(**kwargs))
        return True
    return None
