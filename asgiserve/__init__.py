"""asgiserve: an HTTP/1.1 server for ASGI and WSGI apps.

Programmatic use::

    import asgiserve
    asgiserve.run("main:app", port=8000, workers=2)   # any Config field as a keyword

or, inside an existing event loop::

    server = asgiserve.Server(asgiserve.Config(app=app, port=0))
    await server.serve()
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .server import Server  # noqa: E402

__all__ = ["Config", "Server", "run", "__version__"]

_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(Config)) - {"app"}


def run(app: Union[str, Callable[..., Any]], **options: Any) -> None:
    """Serve ``app`` (an ASGI/WSGI callable or "module:attribute") until SIGINT/SIGTERM.

    Keywords are Config fields (``host``, ``port``, ``bind``, ``workers``, ``log_level``...).
    Startup failures raise AsgiserveError subclasses (ConfigError, AppLoadError, BindError,
    LifespanError) instead of exiting the interpreter.
    """
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"run() got an unexpected keyword argument {unknown[0]!r}")
    config = Config(app=app, **options)
    from .cli import preflight
    from .logs import configure_logging

    from . import startup

    startup.prepare(config)  # --chdir, -e (the CLI's order)
    preflight(config)
    if config.daemon:
        from .daemon import daemonize

        daemonize(config)  # returns in the daemon only

    configure_logging(config)
    startup.begin(config)
    if config.supervised:  # the CLI's rule: --workers > 1, --supervise or --max-requests
        import importlib

        importlib.import_module("asgiserve.workers.supervisor").run(config)
    else:
        from . import server

        server.run(config)
