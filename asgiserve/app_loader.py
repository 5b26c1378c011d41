"""Turn ``config.app`` ("pkg.module:attr.sub" or a callable) into an ASGI 3 callable.

Failures are typed so the CLI can print one line: the module itself is missing, the attribute
is missing, the object is not callable. A failure *inside* the user's module (an ImportError of
one of its own imports, a SyntaxError, any exception at import time) is their bug: it becomes
AppImportError, which carries the original exception so its traceback can be shown.

Interface detection (``--interface auto``) looks at signatures, never at framework names:
  ASGI 3: a callable taking (scope, receive, send), normally a coroutine function or an object
          whose ``__call__`` is one (Starlette, FastAPI, Django's ASGIHandler, partials).
  ASGI 2: a class, or a callable taking only (scope), whose result is awaited with (receive, send).
  WSGI:   a plain (non-async) callable taking (environ, start_response) (Flask, Django WSGIHandler).
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .config import Config
from .errors import AppLoadError

ASGIApp = Callable[..., Any]


class AppImportError(AppLoadError):
    """Importing (or calling the factory of) the user's app raised: show their traceback."""

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.original = original

    def format_traceback(self) -> str:
        """The original traceback, minus importlib's and this loader's own frames."""
        exc = self.original
        te = traceback.TracebackException.from_exception(exc)
        te.stack = traceback.StackSummary.from_list(
            [f for f in te.stack if not _is_machinery(f.filename)]
        )
        return "".join(te.format())


def _is_machinery(filename: str) -> bool:
    return filename.startswith("<frozen importlib") or filename == __file__ or (
        os.path.basename(filename) == "__init__.py" and os.path.dirname(filename).endswith("importlib")
    )


@dataclass(frozen=True)
class LoadedApp:
    app: ASGIApp  # always an ASGI 3 callable
    interface: str  # "asgi3" | "asgi2" | "wsgi"
    description: str  # for the startup log line


def load_app(config: Config) -> LoadedApp:
    if config.env_file:  # before the import: module-level code reads os.environ
        from .envfile import load_env_file

        load_env_file(config.env_file)
    target = config.app
    if target is None:
        raise AppLoadError("no application given (APP as 'module:attribute')")
    if isinstance(target, str):
        label = target
        obj = import_from_string(target, config.app_dir)
    else:
        label = getattr(target, "__qualname__", None) or type(target).__qualname__
        obj = target
    if config.factory:
        if not callable(obj):
            raise AppLoadError(f'factory "{label}" is not callable')
        try:
            obj = obj()
        except Exception as exc:
            raise AppImportError(f'calling factory "{label}" raised {type(exc).__name__}: {exc}', exc) from exc
        label = f"{label}()"
    if not callable(obj):
        raise AppLoadError(f'"{label}" is not callable (it is {type(obj).__name__!s})')
    interface = config.interface
    guessed = False
    if interface == "auto":
        interface, guessed = detect_interface(obj)
    app, description = _adapt(obj, interface, config)
    note = " (assumed; set --interface if wrong)" if guessed else ""
    return LoadedApp(app, interface, f'{description} "{label}"{note}')


def import_from_string(target: str, app_dir: Optional[str] = ".") -> Any:
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppLoadError(f'APP must look like "module:attribute", got "{target}"')
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Is the missing module the APP's module (or one of its parent packages)? Then it is a
        # usage mistake. Otherwise the user's module imports something that is not installed.
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppLoadError(f'could not import module "{module_name}"') from None
        raise AppImportError(f'error while importing module "{module_name}": {exc}', exc) from exc
    except Exception as exc:
        raise AppImportError(
            f'error while importing module "{module_name}": {type(exc).__name__}: {exc}', exc
        ) from exc
    obj: Any = module
    for part in attrs.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f'attribute "{attrs}" not found in module "{module_name}"') from None
    return obj


def _positional_arity(obj: Any) -> Optional[tuple[int, float]]:
    """(required, maximum) positional parameters of ``obj``, or None if not introspectable."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    required, maximum = 0, 0.0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            maximum += 1
            if p.default is p.empty:
                required += 1
        elif p.kind == p.VAR_POSITIONAL:
            maximum = float("inf")
    return required, maximum


def _is_coroutine_callable(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def detect_interface(obj: Any) -> tuple[str, bool]:
    """Return (interface, guessed). ``guessed`` means the signature did not settle it."""
    if inspect.isclass(obj):
        # A class is called with the scope (ASGI 2) or with (environ, start_response) (PEP 3333).
        arity = _positional_arity(obj)
        if arity is not None and arity[0] == 2 and not _is_coroutine_callable(getattr(obj, "__call__", None)):
            return "wsgi", False
        return "asgi2", arity is None or not (arity[0] <= 1 <= arity[1])
    coroutine = _is_coroutine_callable(obj)
    arity = _positional_arity(obj)
    if arity is None:
        return "asgi3", not coroutine
    required, maximum = arity
    if maximum == float("inf") and required == 0:  # (*args, **kwargs) wrappers say nothing
        return "asgi3", not coroutine
    if required <= 3 <= maximum and (required == 3 or coroutine):
        return "asgi3", False
    if coroutine:
        return "asgi3", True
    if required <= 2 <= maximum:
        return "wsgi", False
    if required <= 1 <= maximum:
        return "asgi2", False
    if maximum == 0:
        raise AppLoadError(f"{obj!r} takes no arguments: if it is an app factory, add --factory")
    raise AppLoadError(
        f"cannot tell the interface of {obj!r}: it takes {required} required arguments; "
        "use --interface asgi3|asgi2|wsgi"
    )


class ASGI2Adapter:
    """Presents an ASGI 2 (double-callable) app as ASGI 3."""

    __slots__ = ("app",)

    def __init__(self, app: Callable[[dict[str, Any]], Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def _adapt(obj: Any, interface: str, config: Config) -> tuple[ASGIApp, str]:
    if interface == "asgi3":
        return obj, "ASGI 3 app"
    if interface == "asgi2":
        return ASGI2Adapter(obj), "ASGI 2 app"
    try:
        from .wsgi import WSGIMiddleware
    except ImportError as exc:
        raise AppLoadError(f"WSGI support is not available: {exc}") from None
    wrapped = WSGIMiddleware(
        obj, threads=config.threads, send_timeout=config.wsgi_send_timeout, buffer_size=config.wsgi_buffer,
        multiprocess=config.workers > 1,
    )
    return wrapped, f"WSGI app ({config.threads} threads)"
