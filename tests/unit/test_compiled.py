"""The optional mypyc build (setup.py, docs/mypyc.md).

Under ``./dev test --compiled`` (ASGISERVE_EXPECT_COMPILED=1) every module setup.py lists must
have been imported from its compiled extension, or the run would test the pure code twice.
"""
from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets):
            paths = ast.literal_eval(node.value)
            return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


def test_compiled_list_names_existing_modules() -> None:
    for name in compiled_modules():
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name


@pytest.mark.skipif(os.environ.get("ASGISERVE_EXPECT_COMPILED") != "1", reason="not a compiled run")
def test_modules_are_compiled() -> None:
    for name in compiled_modules():
        module = importlib.import_module(name)
        assert module.__file__ is not None and module.__file__.endswith(".so"), (name, module.__file__)


def test_client_disconnected_is_one_class() -> None:
    # Defined in asgi/errors.py (mypyc cannot compile an OSError subclass), found in asgi.http.
    from asgiserve.asgi import errors, http

    assert http.ClientDisconnected is errors.ClientDisconnected
    assert http.ClientDisconnected.__module__ == "asgiserve.asgi.http"
    assert issubclass(http.ClientDisconnected, OSError)


def test_wsgi_errors_are_found_where_they_always_were() -> None:
    # Defined in wsgi/errors.py for mypyc, found in wsgi.streams / wsgi.bridge and the package.
    from asgiserve import wsgi
    from asgiserve.wsgi import bridge, errors, streams

    assert streams.ClientDisconnected is errors.ClientDisconnected is wsgi.ClientDisconnected
    assert bridge.ClientStalled is errors.ClientStalled is wsgi.ClientStalled
    assert issubclass(wsgi.ClientStalled, wsgi.ClientDisconnected) and issubclass(wsgi.ClientStalled, TimeoutError)
    assert (wsgi.ClientDisconnected.__module__, wsgi.ClientStalled.__module__) == ("asgiserve.wsgi.streams",
                                                                                   "asgiserve.wsgi.bridge")


def test_task_factories_get_a_named_python_coroutine() -> None:
    # A task factory may read __qualname__ (or cr_frame) of the coroutine it is given; mypyc's
    # coroutine objects have neither, so they are wrapped (server.genuine_coroutine).
    import asyncio
    import types

    from asgiserve.server import COMPILED_COROUTINES, genuine_coroutine

    class Stub:
        def __init__(self) -> None:
            self.coro = self.run()

        async def run(self) -> None:
            pass

    real = Stub().coro
    assert genuine_coroutine(real) is real
    real.close()

    class run_asgi_RequestCycle_gen:  # shaped like a compiled coroutine: awaitable, not a CoroutineType
        def __await__(self) -> types.GeneratorType:  # type: ignore[type-arg]
            return iter(())  # type: ignore[return-value]

    wrapped = genuine_coroutine(run_asgi_RequestCycle_gen())  # type: ignore[arg-type]
    assert type(wrapped) is types.CoroutineType
    assert wrapped.__qualname__ == "RequestCycle.run_asgi" == COMPILED_COROUTINES["run_asgi_RequestCycle_gen"]
    asyncio.run(wrapped)


@pytest.mark.skipif(os.environ.get("ASGISERVE_EXPECT_COMPILED") != "1", reason="not a compiled run")
def test_compiled_coroutine_names_are_known() -> None:
    from unittest.mock import Mock

    from asgiserve.asgi.http import RequestCycle
    from asgiserve.http.events import RequestHead
    from asgiserve.server import COMPILED_COROUTINES

    cycle = RequestCycle(Mock(), RequestHead(b"GET", b"/", "1.1", []))
    coro = cycle.run_asgi()
    try:
        assert type(coro).__name__ in COMPILED_COROUTINES
    finally:
        coro.close()
