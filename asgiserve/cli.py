"""The ``asgiserve`` command, generated from Config's fields.

No option is spelled out here: each Config field's metadata gives its flags, help, choices and
extra env var, and its type annotation gives the click type. So a new Config field is a new
flag, a new ``ASGISERVE_<NAME>`` env var and a new ``asgiserve.run()`` keyword at once.

Exit codes: 0 clean exit; 2 usage/config errors (one line); 3 startup failures (app import,
bind, lifespan; one line, except that an exception raised inside the user's module shows its
traceback, since that is their bug to see).
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import platform
import sys
import typing
from typing import Any, Optional

import click

from . import __version__, config_file, startup
from .config import Config, env_names, option_fields
from .errors import EXIT_STARTUP, EXIT_USAGE, AsgiserveError, ConfigError

DEMO_APP = "asgiserve.demo:app"
logger = logging.getLogger("asgiserve.error")

if typing.TYPE_CHECKING:  # click >= 8.2 makes ParamType generic; 8.1 does not
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType


class OctalInt(_ParamType):
    name = "octal"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.lower().startswith("0o"):
            text = text[2:]
        try:
            number = int(text, 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal number (e.g. 007, 0o22)", param, ctx)
        if not 0 <= number <= 0o777:
            self.fail(f"{value!r} is not a umask between 000 and 777", param, ctx)
        return number


class LineList(_ParamType):
    """A repeatable string whose env var holds one value per line ('Name: value' may have spaces)."""

    name = "text"
    envvar_list_splitter = "\n"

    def split_envvar_value(self, rv: str) -> typing.Sequence[str]:
        return [line.strip() for line in rv.splitlines() if line.strip()]


# Types the annotation alone cannot express. Keyed by field name; not a second option list.
SPECIAL_TYPES: dict[str, _ParamType] = {
    "umask": OctalInt(),
    "headers": LineList(),
    "env": LineList(),
    "log_config": click.Path(exists=True, dir_okay=False),
}
PLAIN_TYPES: dict[Any, _ParamType] = {int: click.INT, float: click.FLOAT, str: click.STRING, bool: click.BOOL}


def _click_type(f: "dataclasses.Field[Any]", annotation: Any) -> Optional[_ParamType]:
    if f.name in SPECIAL_TYPES:
        return SPECIAL_TYPES[f.name]
    if f.metadata.get("choices"):
        return click.Choice(f.metadata["choices"], case_sensitive=False)
    args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
    base = args[0] if args else annotation
    return PLAIN_TYPES.get(base, click.STRING)


def _option(f: "dataclasses.Field[Any]", annotation: Any) -> click.Option:
    meta = f.metadata
    flags = list(meta.get("flags") or (f"--{f.name.replace('_', '-')}",))
    if meta.get("is_flag") and meta.get("secondary"):
        long_flags = [x for x in flags if x.startswith("--")]
        primary = long_flags[0] if long_flags else flags[0]
        flags[flags.index(primary)] = f"{primary}/{meta['secondary']}"
    kwargs: dict[str, Any] = {
        "help": meta.get("help"),
        "envvar": env_names(f),
        "show_envvar": True,
        "default": f.default,
        "show_default": f.default not in (None, (), "") and not meta.get("is_flag"),
    }
    if meta.get("is_flag"):
        kwargs["is_flag"] = True
    else:
        kwargs["type"] = _click_type(f, annotation)
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
    if meta.get("multiple"):
        kwargs["multiple"] = True
    return click.Option(flags + [f.name], **kwargs)


def build_params() -> list[click.Parameter]:
    hints = typing.get_type_hints(Config)
    params: list[click.Parameter] = [
        click.Argument(["app"], required=False, envvar="ASGISERVE_APP", metavar="[APP]")
    ]
    params.extend(_option(f, hints[f.name]) for f in option_fields())
    return params


def version_text() -> str:
    parts = [f"{platform.python_implementation()} {platform.python_version()}"]
    for name in ("uvloop", "httptools", "h11"):
        try:
            module = __import__(name)
            parts.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            parts.append(f"no {name}")
    return f"asgiserve {__version__} ({', '.join(parts)}) on {platform.system()}"


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit(0)


def fail(message: str, code: int) -> "typing.NoReturn":
    click.echo(f"Error: {message}", err=True)
    from .systemd import notify

    notify(f"STATUS=Failed: {message}", f"EXIT_STATUS={code}")  # systemctl status shows it; -D relays it
    sys.exit(code)


def preflight(config: Config) -> None:
    """Check the values only their runtime users parse, before anything is bound or loaded."""
    from .logs import compile_format
    from .proxy import parse_trusted

    if config.proxy_headers:
        parse_trusted(config.forwarded_allow_ips)
    if config.access_log_format:
        compile_format(config.access_log_format)
    if config.metrics:
        from .metrics_http import require_prometheus

        require_prometheus()  # a missing package is one line (naming the extra) and exit 2
    if config.env_file:
        from .envfile import check_env_file

        check_env_file(config.env_file)
    if config.reload:
        from .workers.watch import check_reload_dirs

        check_reload_dirs(config)


def serve(app: Optional[str], **options: Any) -> None:
    """Build the Config, set up logging and run the server (or the worker supervisor)."""
    demo = app is None
    try:
        config = Config(app=DEMO_APP if demo else app, **options)
        startup.prepare(config)  # --chdir, -e: before the checks, which may read relative paths
        preflight(config)
        if config.daemon:
            from .daemon import daemonize

            daemonize(config)  # returns in the daemon; this process exits when it serves or fails
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        config_file.configure_logging(config)  # logs', or the config file's logconfig_dict; then its notes
        startup.begin(config)
        if demo:
            logger.info("No APP given: serving the built-in demo app (%s). Run 'asgiserve module:app'.", DEMO_APP)
        if config.supervised:
            try:
                supervisor = importlib.import_module("asgiserve.workers.supervisor")
            except ImportError as exc:
                fail(f"--workers {config.workers} needs the worker supervisor, which is unavailable: {exc}",
                     EXIT_STARTUP)
            supervisor.run(config)
        else:
            from . import server

            server.run(config)
    except AsgiserveError as exc:
        from .app_loader import AppImportError

        if isinstance(exc, AppImportError):
            click.echo(exc.format_traceback().rstrip("\n"), err=True)
        fail(str(exc), exc.exit_code)


class AsgiserveCommand(click.Command):
    """Reports usage errors as one line (plus a hint), not click's three-line block."""

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        extra.update(config_file.prepare(self, args))  # -c FILE, GUNICORN_CMD_ARGS: click's default_map
        checking = extra["obj"].check  # --check-config reports every failure with exit code 1
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{(exc.ctx.command_path if exc.ctx else 'asgiserve')} --help')"
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(1 if checking else exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(1 if checking else exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


def _callback(**params: Any) -> None:
    from .config_report import handle_modes

    if handle_modes(params, DEMO_APP):  # --print-config, --check-config; where values came from
        return
    app = params.pop("app")
    serve(app, **params)


cli = AsgiserveCommand(
    name="asgiserve",
    callback=_callback,
    params=build_params()
    + [
        click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
                     help="Show the version (and loop/parser libraries) and exit."),
    ]
    + config_file.cli_options(),
    help="Serve APP ('module:attribute', an ASGI 3, ASGI 2 or WSGI app). Without APP, serves a demo page.",
    context_settings={"max_content_width": 100, "help_option_names": ["-h", "--help"]},
)


def main(args: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    rv = cli.main(args=args, prog_name="asgiserve")
    if isinstance(rv, int) and rv:
        sys.exit(rv)
