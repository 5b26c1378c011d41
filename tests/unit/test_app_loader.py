"""load_app(): import strings, factories, failures, and interface detection on real frameworks."""
from __future__ import annotations

import asyncio
import functools
import itertools
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from asgiserve.app_loader import ASGI2Adapter, AppImportError, detect_interface, load_app
from asgiserve.config import Config
from asgiserve.errors import AppLoadError

_counter = itertools.count()


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """make_module(source) -> unique module name importable from tmp_path (cleaned up after)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    names: list[str] = []

    def make(source: str, name: str | None = None) -> str:
        name = name or f"loader_case_{next(_counter)}"
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        names.append(name.split(".")[0])
        return name

    yield make
    for mod in list(sys.modules):
        if any(mod == n or mod.startswith(n + ".") for n in names):
            del sys.modules[mod]


def config_for(target: Any, tmp_path: Path, **options: Any) -> Config:
    return Config(app=target, app_dir=str(tmp_path), **options)


ASGI_SOURCE = """
async def app(scope, receive, send):
    pass

class Holder:
    class inner:
        app = app

def create_app():
    return app

def broken_factory():
    raise RuntimeError("factory exploded")

not_callable = 42
"""


# -- import strings ----------------------------------------------------------------------
def test_module_attribute(make_module: Any, tmp_path: Path) -> None:
    name = make_module(ASGI_SOURCE)
    loaded = load_app(config_for(f"{name}:app", tmp_path))
    assert loaded.interface == "asgi3"
    assert loaded.app is sys.modules[name].app
    assert loaded.description == f'ASGI 3 app "{name}:app"'


def test_dotted_attribute_and_package_module(make_module: Any, tmp_path: Path) -> None:
    name = make_module(ASGI_SOURCE, name=f"pkg_{next(_counter)}.sub")
    (tmp_path / name.split(".")[0] / "__init__.py").write_text("")
    loaded = load_app(config_for(f"{name}:Holder.inner.app", tmp_path))
    assert loaded.app is sys.modules[name].app


def test_factory(make_module: Any, tmp_path: Path) -> None:
    name = make_module(ASGI_SOURCE)
    loaded = load_app(config_for(f"{name}:create_app", tmp_path, factory=True))
    assert loaded.app is sys.modules[name].app
    assert "create_app()" in loaded.description


def test_factory_without_flag_gets_a_hint(make_module: Any, tmp_path: Path) -> None:
    name = make_module(ASGI_SOURCE)
    with pytest.raises(AppLoadError, match="--factory"):
        load_app(config_for(f"{name}:create_app", tmp_path))


def test_factory_that_raises_shows_the_users_traceback(make_module: Any, tmp_path: Path) -> None:
    name = make_module(ASGI_SOURCE)
    with pytest.raises(AppImportError) as info:
        load_app(config_for(f"{name}:broken_factory", tmp_path, factory=True))
    assert "factory exploded" in str(info.value)
    assert 'raise RuntimeError("factory exploded")' in info.value.format_traceback()


def test_module_not_found_is_one_clean_error(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(config_for("no_such_module_xyz:app", tmp_path))
    assert not isinstance(info.value, AppImportError)
    assert str(info.value) == 'could not import module "no_such_module_xyz"'
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_parent_package_is_module_not_found(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(config_for("no_such_pkg_xyz.sub:app", tmp_path))
    assert not isinstance(info.value, AppImportError)
    assert 'could not import module "no_such_pkg_xyz.sub"' == str(info.value)


def test_import_error_inside_the_module_is_the_users_bug(make_module: Any, tmp_path: Path) -> None:
    name = make_module("import os\nimport not_installed_dependency_xyz\napp = None\n")
    with pytest.raises(AppImportError) as info:
        load_app(config_for(f"{name}:app", tmp_path))
    assert "not_installed_dependency_xyz" in str(info.value)
    text = info.value.format_traceback()
    assert f"{name}.py" in text and "line 2" in text
    assert "import not_installed_dependency_xyz" in text
    assert "<frozen importlib" not in text and "app_loader.py" not in text


@pytest.mark.parametrize(
    "source, kind",
    [("def broken(:\n", "SyntaxError"), ("raise RuntimeError('boom at import')\n", "RuntimeError")],
)
def test_other_import_time_failures_are_the_users_bug(
    make_module: Any, tmp_path: Path, source: str, kind: str
) -> None:
    name = make_module(source)
    with pytest.raises(AppImportError) as info:
        load_app(config_for(f"{name}:app", tmp_path))
    assert kind in str(info.value)
    assert kind in info.value.format_traceback()


def test_attribute_not_found(make_module: Any, tmp_path: Path) -> None:
    name = make_module(ASGI_SOURCE)
    with pytest.raises(AppLoadError, match=f'attribute "Holder.nope" not found in module "{name}"'):
        load_app(config_for(f"{name}:Holder.nope", tmp_path))


def test_not_callable(make_module: Any, tmp_path: Path) -> None:
    name = make_module(ASGI_SOURCE)
    with pytest.raises(AppLoadError, match="is not callable"):
        load_app(config_for(f"{name}:not_callable", tmp_path))


@pytest.mark.parametrize("target", ["justamodule", "mod:", ":app"])
def test_malformed_target(target: str, tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match='must look like "module:attribute"'):
        load_app(config_for(target, tmp_path))


def test_app_dir_is_put_on_sys_path(make_module: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = make_module(ASGI_SOURCE)
    monkeypatch.chdir("/")
    assert str(tmp_path) not in sys.path
    load_app(config_for(f"{name}:app", tmp_path))
    assert sys.path[0] == str(tmp_path)


def test_no_app() -> None:
    with pytest.raises(AppLoadError, match="no application"):
        load_app(Config())


# -- interface detection -----------------------------------------------------------------
async def asgi3_function(scope: Any, receive: Any, send: Any) -> None:
    pass


async def asgi3_with_extra(prefix: str, scope: Any, receive: Any, send: Any) -> None:
    pass


class AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class ASGI2Class:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "seen", "path": self.scope["path"]})


def asgi2_function(scope: Any) -> Any:
    return ASGI2Class(scope)


def wsgi_function(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"ok"]


class WSGIClass:
    """PEP 3333 allows a class as the app: calling it returns the response iterable."""

    def __init__(self, environ: Any, start_response: Any) -> None:
        self.environ = environ

    def __iter__(self) -> Iterator[bytes]:
        yield b"ok"


def sync_asgi3_wrapper(scope: Any, receive: Any, send: Any) -> Any:
    return asgi3_function(scope, receive, send)  # returns an awaitable: still ASGI 3


@functools.wraps(asgi3_function)
def wrapped_asgi3(*args: Any) -> Any:
    return asgi3_function(*args)


async def star_args_coroutine(*args: Any, **kwargs: Any) -> None:
    pass


def _django() -> Any:
    # Django's settings are process-wide: reuse the example project's (configured on import)
    # rather than configuring our own, which would change what other tests' Django apps see.
    from examples import django_app

    return django_app


def frameworks() -> list[tuple[str, Any, str]]:
    import flask
    import starlette.applications
    import starlette.middleware.gzip
    import fastapi

    django_app = _django()
    from django.core.asgi import get_asgi_application
    from django.core.handlers.wsgi import WSGIHandler

    star = starlette.applications.Starlette()
    return [
        ("flask", flask.Flask("t"), "wsgi"),
        ("flask.wsgi_app", flask.Flask("t").wsgi_app, "wsgi"),
        ("django WSGIHandler", WSGIHandler(), "wsgi"),
        ("django example project", django_app.application, "wsgi"),
        ("django ASGIHandler", get_asgi_application(), "asgi3"),
        ("starlette", star, "asgi3"),
        ("starlette middleware", starlette.middleware.gzip.GZipMiddleware(star), "asgi3"),
        ("fastapi", fastapi.FastAPI(), "asgi3"),
    ]


@pytest.mark.parametrize("label", [f[0] for f in frameworks()])
def test_real_frameworks(label: str) -> None:
    obj, expected = {f[0]: (f[1], f[2]) for f in frameworks()}[label]
    assert detect_interface(obj) == (expected, False)


@pytest.mark.parametrize(
    "obj, expected",
    [
        (asgi3_function, ("asgi3", False)),
        (functools.partial(asgi3_with_extra, "x"), ("asgi3", False)),
        (AsyncCallable(), ("asgi3", False)),
        (sync_asgi3_wrapper, ("asgi3", False)),
        (wrapped_asgi3, ("asgi3", False)),
        (ASGI2Class, ("asgi2", False)),
        (asgi2_function, ("asgi2", False)),
        (wsgi_function, ("wsgi", False)),
        (WSGIClass, ("wsgi", False)),
        (functools.partial(lambda prefix, environ, start_response: [], "x"), ("wsgi", False)),
        (star_args_coroutine, ("asgi3", False)),
        (lambda *args, **kwargs: None, ("asgi3", True)),
    ],
    ids=lambda v: getattr(v, "__name__", type(v).__name__) if not isinstance(v, tuple) else v[0],
)
def test_detect_interface(obj: Any, expected: tuple[str, bool]) -> None:
    assert detect_interface(obj) == expected


def test_uncertain_detection_says_so_in_the_description() -> None:
    loaded = load_app(Config(app=lambda *args: None))
    assert loaded.interface == "asgi3" and "--interface" in loaded.description


def test_too_many_required_arguments_is_an_error() -> None:
    def four(a: Any, b: Any, c: Any, d: Any) -> None:
        pass

    with pytest.raises(AppLoadError, match="--interface"):
        load_app(Config(app=four))


def test_forced_interface_overrides_detection() -> None:
    loaded = load_app(Config(app=AsyncCallable(), interface="asgi2"))
    assert loaded.interface == "asgi2" and isinstance(loaded.app, ASGI2Adapter)


def test_asgi2_adapter_runs_the_instance() -> None:
    loaded = load_app(Config(app=ASGI2Class))
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {}

    asyncio.run(loaded.app({"type": "http", "path": "/p"}, receive, send))
    assert sent == [{"type": "seen", "path": "/p"}]
    assert loaded.description.startswith("ASGI 2 app")


def test_wsgi_apps_are_wrapped_in_the_bridge() -> None:
    import flask

    from asgiserve.wsgi import WSGIMiddleware

    loaded = load_app(Config(app=flask.Flask("t"), threads=3, wsgi_send_timeout=7, wsgi_buffer=65536))
    assert loaded.interface == "wsgi"
    assert isinstance(loaded.app, WSGIMiddleware)
    assert (loaded.app.send_timeout, loaded.app.buffer_size) == (7, 65536)
    assert "WSGI app (3 threads)" in loaded.description
    assert detect_interface(loaded.app) == ("asgi3", False)  # what the server sees


def test_wsgi_class_is_wrapped(make_module: Any, tmp_path: Path) -> None:
    loaded = load_app(Config(app=WSGIClass))
    assert loaded.interface == "wsgi"
