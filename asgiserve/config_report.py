"""--print-config and --check-config: the configuration as the server would run it, then exit.

--print-config lists every option's effective value and where it came from (default, the
config file and the name it used there, the environment variable, the command line), then the
server hooks and logconfig_dict; exit 0. It loads nothing.

--check-config loads what starting would load: the options (Config's own checks and the CLI's
preflight), the bind addresses (parsed, not bound), the TLS files, the logging configuration
and the app itself. Exit 0 with one line saying what would be served, or 1 with one line
saying why not (gunicorn's --check-config exits 1 too).
"""
from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn, Optional

import click

from . import hooks
from .config import Config, option_fields
from .config_file import Sources
from .errors import AsgiserveError

EXIT_CHECK_FAILED = 1


def handle_modes(params: dict[str, Any], demo_app: str) -> bool:
    """The command's callback calls this first: resolve the sources; run --print-config or
    --check-config (both exit), else leave ``params`` ready for serving and return False."""
    from .config_file import resolve

    mode, sources, where = resolve(params)
    if not mode:
        return False
    app = params.pop("app")
    if mode == "print":
        print_config(app, params, where, sources, demo_app)
    else:
        check_config(app, params, sources, demo_app)
    sys.exit(0)


def _show(name: str, value: Any) -> str:
    if name == "umask" and isinstance(value, int):
        return f"0o{value:03o}"
    return repr(value)


def print_config(app: Optional[str], params: dict[str, Any], where: dict[str, str], sources: Sources,
                 demo_app: str) -> None:
    config = _build(app or demo_app, params, check=False)
    rows = [("app", repr(config.app) + ("" if app else " (the built-in demo)"), where.get("app", "default"))]
    for f in option_fields():
        rows.append((f.name, _show(f.name, getattr(config, f.name)), where.get(f.name, "default")))
    for name, fn in hooks.installed().items():
        label = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        rows.append((f"hook {name}", label, f"file {sources.label}"))
    if sources.logconfig_dict is not None:
        used = "" if sources.apply_logconfig_dict else " (not used: log_config is set)"
        rows.append(("logconfig_dict", f"{len(sources.logconfig_dict)} key(s){used}", f"file {sources.label}"))
    width = max(len(r[0]) for r in rows)
    value_width = min(40, max(len(r[1]) for r in rows))
    for name, value, origin in rows:
        click.echo(f"{name:<{width}} = {value:<{value_width}}  # {origin}")
    for level, message in sources.notes:
        if level >= logging.WARNING:
            click.echo(f"Warning: {message}", err=True)


def check_config(app: Optional[str], params: dict[str, Any], sources: Sources, demo_app: str) -> None:
    from . import bind, config_file, tls
    from .app_loader import load_app

    config = _build(app or demo_app, params, check=True)
    try:
        for spec in config.bind_specs:
            bind.parse_spec(spec)
        tls.load(config)
        config_file.configure_logging(config)
        loaded = load_app(config)
    except AsgiserveError as exc:
        _fail(str(exc))
    binds = ", ".join(config.bind_specs)
    named = f", {len(hooks.installed())} server hook(s)" if hooks.installed() else ""
    click.echo(f"Configuration OK: {loaded.description}, {config.workers} worker(s), listening on {binds}{named}.")


def _build(app: str, params: dict[str, Any], check: bool) -> Config:
    from .cli import preflight

    try:
        config = Config(app=app, **params)
        if check:
            from .startup import prepare

            prepare(config)  # --chdir, -e: as serving would, before the app is imported
        preflight(config)
    except AsgiserveError as exc:
        if check:
            _fail(str(exc))
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    return config


def _fail(message: str) -> "NoReturn":
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_CHECK_FAILED)
