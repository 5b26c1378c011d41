"""gunicorn's server hooks: same names, same arguments, objects that offer what real hooks use.

Hooks come from a config file (a callable, or a "module:function"/"module.function" string)
and live here, in a registry of this module, never in Config: Config stays a frozen, picklable
value, and workers inherit the registry through fork. A config file with hooks runs the
supervisor even with one worker, as gunicorn always has an arbiter, so every hook has a server
and a worker to run for.

Where each one runs (S: the supervisor, W: a worker process):
  S on_starting(server)         before anything is loaded or bound
  S when_ready(server)          sockets bound, before the first worker is forked
  S on_reload(server)           on HUP (and --reload), before the new workers start
  S pre_fork(server, worker)    just before a worker is forked (worker.pid is "[booting]")
  W post_fork(server, worker)   first thing in the new worker
  W post_worker_init(worker)    the app is loaded, before the worker serves
  W worker_int(worker)          the worker got SIGINT or SIGQUIT
  W worker_abort(worker)        the worker got SIGABRT (--timeout: its loop was stuck)
  W pre_request(worker, req)    each HTTP request, before the app gets it
  W post_request(worker, req, environ, resp)  after the app returned (2 or 3 parameters work too)
  W worker_exit(server, worker) the worker is about to exit
  S child_exit(server, worker)  a worker exited (reaped); worker.pid is the dead one's
  S nworkers_changed(server, new_value, old_value)  at start (old_value None) and on TTIN/TTOU
  S on_exit(server)             the supervisor is about to exit
  pre_exec is never called: asgiserve does not re-execute itself on USR2.

A hook that raises is logged (one error line and the traceback) and serving goes on; in
on_starting or when_ready it stops the start (HookError, exit code 3). Every entry point returns
at once when no hook is installed, and the request hooks cost nothing unless one is set: the
app is wrapped only then.
"""
from __future__ import annotations

import contextlib
import http
import importlib
import inspect
import logging
import os
import socket
from typing import Any, Callable, Iterator, Optional

from .errors import AsgiserveError, ConfigError

logger = logging.getLogger("asgiserve.error")

HOOKS: dict[str, int] = {  # name -> positional arguments gunicorn passes
    "on_starting": 1, "on_reload": 1, "when_ready": 1, "pre_fork": 2, "post_fork": 2, "post_worker_init": 1,
    "worker_int": 1, "worker_abort": 1, "pre_exec": 1, "pre_request": 2, "post_request": 4, "child_exit": 2,
    "worker_exit": 2, "nworkers_changed": 3, "on_exit": 1,
}

_registry: dict[str, Callable[..., Any]] = {}
_server: Optional["ServerView"] = None
_views: dict[int, "WorkerView"] = {}  # supervisor side: pid -> the view its hooks saw
current_worker: Optional["WorkerView"] = None  # in a worker process


class HookError(AsgiserveError):
    """on_starting or when_ready raised: the start is stopped (exit code 3)."""


# -- the registry ------------------------------------------------------------------------------
def resolve(name: str, value: Any, label: str) -> Callable[..., Any]:
    """A hook from a config file: the callable, or one imported from "module:function"."""
    if isinstance(value, str):
        value = _import(name, value, label)
    if not callable(value):
        raise ConfigError(f"{label}: {name} must be a function or 'module:function', not {type(value).__name__}")
    wanted = HOOKS[name]
    counts = (4, 3, 2) if name == "post_request" else (wanted,)  # gunicorn adapts post_request
    for count in counts:
        if _accepts(value, count):
            if count == wanted:
                return value  # type: ignore[no-any-return]
            fn = value
            return lambda worker, req, environ, resp: fn(*(worker, req, environ)[:count])
    raise ConfigError(f"{label}: {name} must take {wanted} positional argument(s), as gunicorn calls it")


def _import(name: str, target: str, label: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{label}: {name} = {target!r}: write 'module:function' or 'module.function'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{label}: {name} = {target!r}: {type(exc).__name__}: {exc}") from None
    return obj


def _accepts(fn: Any, count: int) -> bool:
    try:
        inspect.signature(fn).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): trust it
        return True
    return True


def install(hooks: dict[str, Callable[..., Any]]) -> None:
    _registry.clear()
    _registry.update(hooks)


def installed() -> dict[str, Callable[..., Any]]:
    return dict(_registry)


def call(name: str, *args: Any) -> Optional[Exception]:
    """Run a hook if it is set; log (never raise) what it raises, and return it."""
    fn = _registry.get(name)
    if fn is None:
        return None
    try:
        fn(*args)
    except Exception as exc:
        logger.exception("The %s hook raised %s: %s", name, type(exc).__name__, exc)
        return exc
    return None


def _startup(name: str, *args: Any) -> None:
    """A startup hook that raises stops the start (HookError: exit 3)."""
    exc = call(name, *args)
    if exc is not None:
        raise HookError(f"the {name} hook raised {type(exc).__name__}: {exc}")


# -- what hooks get ------------------------------------------------------------------------------
class Settings:
    """``server.cfg`` / ``worker.cfg``: settings by gunicorn's names or asgiserve's."""

    def __init__(self, config: Any) -> None:
        self._config = config

    def __getattr__(self, name: str) -> Any:
        from .gunicorn_names import GUNICORN

        config = self.__dict__["_config"]
        if name == "bind":
            return list(config.bind_specs)
        if name in HOOKS:
            return _registry.get(name)
        field = GUNICORN.get(name, name)
        if field == "app" or hasattr(type(config), "__dataclass_fields__") and field in config.__dataclass_fields__:
            return getattr(config, field)
        raise AttributeError(f"no setting named {name!r}")


class ServerView:
    """The ``server`` argument (gunicorn's Arbiter): log, address, cfg, pid, num_workers, WORKERS."""

    def __init__(self, supervisor: Any) -> None:
        self._supervisor = supervisor
        self.pid = os.getpid()
        self.log = logger
        self.cfg = Settings(supervisor.config)

    @property
    def address(self) -> list[Any]:
        """Where it listens: (host, port) tuples and unix socket paths, as gunicorn lists them."""
        sockets: list[socket.socket] = [s for s in self._supervisor.sockets if s.fileno() != -1]
        if sockets:  # bound (before when_ready they are not, and a stop closes them early)
            return [s.getsockname()[:2] if s.family != socket.AF_UNIX else s.getsockname() for s in sockets]
        from .bind import parse_spec

        return [parse_spec(spec)[1] for spec in self._supervisor.config.bind_specs]

    @property
    def num_workers(self) -> int:
        return int(self._supervisor.target)

    @property
    def WORKERS(self) -> dict[int, "WorkerView"]:  # noqa: N802 (gunicorn's name)
        return dict(_views)


class WorkerView:
    """The ``worker`` argument: pid, ppid, age, alive, log, cfg, and wsgi (the loaded app) once loaded."""

    def __init__(self, server: ServerView, age: int) -> None:
        self.pid: Any = "[booting]"
        self.ppid = server.pid
        self.age = age
        self.alive = True
        self.booted = False
        self.log = logger
        self.cfg = server.cfg
        self.wsgi: Any = None

    def __repr__(self) -> str:
        return f"<Worker {self.pid}>"


def _server_view(supervisor: Any) -> ServerView:
    global _server
    if _server is None or _server._supervisor is not supervisor:
        _server = ServerView(supervisor)
    return _server


# -- supervisor side -----------------------------------------------------------------------------
def on_starting(supervisor: Any) -> None:
    if _registry:
        call("nworkers_changed", _server_view(supervisor), supervisor.target, None)
        _startup("on_starting", _server_view(supervisor))


def when_ready(supervisor: Any) -> None:
    if _registry:
        _startup("when_ready", _server_view(supervisor))


def on_reload(supervisor: Any) -> None:
    if _registry:
        call("on_reload", _server_view(supervisor))


def on_exit(supervisor: Any) -> None:
    if _registry:
        call("on_exit", _server_view(supervisor))


def nworkers_changed(supervisor: Any, old: int) -> None:
    if _registry and supervisor.target != old:
        call("nworkers_changed", _server_view(supervisor), supervisor.target, old)


def pre_fork(supervisor: Any, age: int) -> Optional[WorkerView]:
    """The worker object for a worker about to be forked (None when no hook is set)."""
    if not _registry:
        return None
    view = WorkerView(_server_view(supervisor), age)
    call("pre_fork", _server_view(supervisor), view)
    return view


def forked(view: Optional[WorkerView], pid: int) -> None:
    if view is not None:
        view.pid = pid
        _views[pid] = view


def child_exit(supervisor: Any, pid: int) -> None:
    view = _views.pop(pid, None)
    if view is not None:
        view.alive = False
        call("child_exit", _server_view(supervisor), view)


# -- worker side ---------------------------------------------------------------------------------
@contextlib.contextmanager
def worker_process(supervisor: Any, view: Optional[WorkerView]) -> Iterator[None]:
    """In a new worker: post_fork first, worker_exit last."""
    global current_worker
    if view is None:
        yield
        return
    view.pid = os.getpid()
    _views.clear()
    current_worker = view
    server = _server_view(supervisor)
    call("post_fork", server, view)
    try:
        yield
    finally:
        view.alive = False
        call("worker_exit", server, view)


def worker_loaded(app: Any) -> None:
    view = current_worker
    if view is not None:
        view.wsgi = app
        view.booted = True
        call("post_worker_init", view)


def worker_stopping(interrupted: bool) -> None:
    """The worker was told to stop; ``interrupted``: by SIGINT or SIGQUIT (worker_int)."""
    view = current_worker
    if view is not None:
        view.alive = False
        if interrupted:
            call("worker_int", view)


def worker_abort() -> None:
    view = current_worker
    if view is not None:
        view.alive = False
        call("worker_abort", view)


def wrap_app(app: Any, interface: str) -> Any:
    """The app, wrapped for pre_request/post_request only when one of them is set."""
    pre, post = _registry.get("pre_request"), _registry.get("post_request")
    if pre is None and post is None:
        return app
    from .request_hooks import RequestHooks

    return RequestHooks(app, interface, pre, post, lambda: current_worker)


def status_text(code: int) -> str:
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"
