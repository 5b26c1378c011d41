"""Config files in gunicorn's format: one more source for the options Config declares.

``-c FILE`` (also ``file:PATH`` and ``python:MODULE``, and ``./gunicorn.conf.py`` when present
and no -c is given, as gunicorn does) is executed as Python; its top-level names are settings.
Both spellings work: gunicorn's setting names, through the table in gunicorn_names.py, and
asgiserve's own option names (the Config field names). Nothing here declares an option: each name maps to a
Config field, and its value is converted by the same click type the command line uses.

Precedence, highest first: the command line; the environment (``ASGISERVE_*``, then
``GUNICORN_CMD_ARGS``, a shell-quoted string of command-line arguments, as gunicorn reads it);
the config file; the defaults. ``WEB_CONCURRENCY`` and ``FORWARDED_ALLOW_IPS`` are platform
defaults, below a config file as in gunicorn (``ASGISERVE_WORKERS`` is not). The file's values
and GUNICORN_CMD_ARGS's become click's ``default_map``, which click ranks exactly there; this
module also remembers where each value came from, for ``--print-config``.

A name asgiserve does not know gets a warning (gunicorn ignores typos silently); a gunicorn
setting that cannot apply is warned once with the reason. Server hooks (``post_fork``...) go to
asgiserve.hooks, outside the frozen, picklable Config.
"""
from __future__ import annotations

import importlib
import logging
import os
import shlex
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import click

from . import hooks
from .config import Config, env_names, option_fields
from .errors import ConfigError
from .gunicorn_names import BIND_HELPERS, GUNICORN, NOT_APPLICABLE, convert, harmless

logger = logging.getLogger("asgiserve.error")

DEFAULT_FILE = "gunicorn.conf.py"
SOURCES_KEY = "asgiserve.sources"

@dataclass
class Sources:
    """What the config file and GUNICORN_CMD_ARGS contributed; kept in the click context."""

    label: Optional[str] = None
    check: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)  # click's default_map: field -> value
    origins: dict[str, str] = field(default_factory=dict)  # field -> where its default_map value came from
    logconfig_dict: Optional[dict[str, Any]] = None
    apply_logconfig_dict: bool = False
    notes: list[tuple[int, str]] = field(default_factory=list)  # logged once logging is set up


# -- reading the file -------------------------------------------------------------------------
def read_location(location: str) -> tuple[str, dict[str, Any]]:
    """Execute ``FILE``, ``file:PATH`` or ``python:MODULE``; return (label, its top-level names)."""
    if location.startswith("python:"):
        module_name = location[len("python:"):]
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise ConfigError(f"-c {location}: no module named {module_name!r}") from None
            raise ConfigError(_exec_failure(location, exc)) from exc
        except Exception as exc:
            raise ConfigError(_exec_failure(location, exc)) from exc
        return location, dict(vars(module))
    path = location[len("file:"):] if location.startswith("file:") else location
    if not os.path.isfile(path):
        raise ConfigError(f"-c {path}: no such file")
    module = types.ModuleType("__config__")
    module.__file__ = os.path.abspath(path)
    sys.modules["__config__"] = module  # as gunicorn does: pickled or dataclass'd names resolve
    try:
        with open(path, "rb") as fh:
            code = compile(fh.read(), module.__file__, "exec")
        exec(code, module.__dict__)
    except Exception as exc:
        traceback.print_exc()
        raise ConfigError(_exec_failure(path, exc)) from None
    return path, dict(vars(module))


def _exec_failure(label: str, exc: BaseException) -> str:
    where = ""
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f" line {exc.lineno}"
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(os.path.basename(label))]
        if frames:
            where = f" line {frames[-1].lineno}"
    return f"config file {label}{where}: {type(exc).__name__}: {exc}"


def _is_setting_value(value: Any) -> bool:
    """Names a config file holds besides settings (imports, helpers) are not warned about."""
    return value is None or isinstance(value, (str, bytes, int, float, bool, list, tuple, dict, set))


def read_settings(names: dict[str, Any], label: str, params: dict[str, click.Parameter],
                  sources: Sources) -> None:
    """Map a config file's names onto option values (converted as the CLI does), hooks and notes."""
    fields = {f.name for f in option_fields()} | {"app"}
    found: dict[str, tuple[Any, str]] = {}  # field -> (value, spelling in the file)
    unknown: list[str] = []
    loaded_hooks: dict[str, Callable[..., Any]] = {}
    for name, value in names.items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        if name in hooks.HOOKS and name not in NOT_APPLICABLE:
            if value is not None:
                loaded_hooks[name] = hooks.resolve(name, value, label)
            continue
        if name == "logconfig_dict":
            if value:
                if not isinstance(value, dict):
                    raise ConfigError(f"{label}: logconfig_dict must be a dict, not {type(value).__name__}")
                sources.logconfig_dict = value
            continue
        if name in NOT_APPLICABLE:
            if not harmless(name, value):
                sources.notes.append((logging.WARNING, f"{label}: {name} is not applicable: {NOT_APPLICABLE[name]}; ignored."))
            continue
        target = GUNICORN.get(name, name if name in fields else None)
        if target is None:
            if _is_setting_value(value) or callable(value) and _close(name, hooks.HOOKS):
                unknown.append(name)
            continue
        if target not in fields:  # a gunicorn setting whose option this version lacks
            if not harmless(name, value) and not (name in ("accesslog", "errorlog") and value == "-"):
                sources.notes.append((logging.WARNING, f"{label}: {name} is not supported by this asgiserve yet; ignored."))
            continue
        if value is None:  # gunicorn's "unset"
            continue
        if name in GUNICORN:
            value = convert(name, value)
        if target in found and found[target][1] in fields and name not in fields:
            continue  # asgiserve's own name wins over a gunicorn alias of it
        found[target] = (value, name)
    if "bind" in found:
        helpers = [n for n in BIND_HELPERS if n in found and found[n][1] == n]
        for n in helpers:
            del found[n]
        if helpers:
            sources.notes.append((logging.INFO, f"{label}: {', '.join(helpers)} ignored: bind says where to listen."))
    for target, (value, name) in found.items():
        sources.defaults[target] = _cast(params, target, value, f"{label}: {name} = {value!r}")
        sources.origins[target] = f"file {label}" + ("" if name == target else f" ({name})")
    if loaded_hooks:
        hooks.install(loaded_hooks)
        if "supervise" not in sources.defaults:
            sources.defaults["supervise"] = True
            sources.origins["supervise"] = f"file {label} (server hooks run in the supervisor)"
    # A near miss of a known name is likely a typo: a line of its own. Other names are often the
    # file's helper variables: one line for all of them.
    others = []
    for name in unknown:
        near = _close(name, set(GUNICORN) | fields | set(hooks.HOOKS) | set(NOT_APPLICABLE))
        if near:
            sources.notes.append((logging.WARNING, f"{label}: {name} is not a setting asgiserve knows "
                                                   f"(did you mean {near}?); ignored."))
        else:
            others.append(name)
    if others:
        sources.notes.append((logging.WARNING, f"{label}: not settings asgiserve knows, ignored: {', '.join(others)}."))


def _close(name: str, candidates: Any) -> Optional[str]:
    """The known name ``name`` is a typo of: one or two letters off (one for short names).

    Helper variables (``keepalive_str``, ``use_loglevel``) differ by a whole word: not typos."""
    limit = 2 if len(name) >= 8 else 1
    best = min(((_distance(name, c), c) for c in sorted(candidates)), default=(limit + 1, ""))
    return best[1] if best[0] <= limit else None


def _distance(a: str, b: str) -> int:
    """Levenshtein distance, adjacent swaps counting one (optimal string alignment)."""
    if abs(len(a) - len(b)) > 2:
        return 3
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _cast(params: dict[str, click.Parameter], target: str, value: Any, what: str) -> Any:
    """Convert like the command line does (the option's own click type); ConfigError if it can't."""
    param = params[target]
    if isinstance(value, dict):
        raise ConfigError(f"{what}: expected {'a list' if param.multiple else 'one value'}, not a dict")
    if param.multiple:
        value = list(value) if isinstance(value, (list, tuple, set)) else [value]
    elif isinstance(value, (list, tuple, set)):
        raise ConfigError(f"{what}: expected one value")
    elif isinstance(value, bytes):
        value = value.decode()
    elif isinstance(param.type, click.types.BoolParamType) and value in (0, 1) and not isinstance(value, str):
        value = bool(value)
    ctx = click.Context(click.Command("asgiserve"))
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise ConfigError(f"{what}: {exc.message}") from None
    except (TypeError, ValueError, AttributeError):
        raise ConfigError(f"{what}: not a valid {param.type.name}") from None


# -- GUNICORN_CMD_ARGS and the command line ---------------------------------------------------
def _cmd_args(command: click.Command, sources: Sources) -> tuple[dict[str, Any], Optional[str]]:
    """Options written in GUNICORN_CMD_ARGS (as on a command line); its -c, if any."""
    raw = os.environ.get("GUNICORN_CMD_ARGS", "").strip()
    if not raw:
        return {}, None
    try:
        ctx = command.make_context("GUNICORN_CMD_ARGS", shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(f"GUNICORN_CMD_ARGS: {exc}") from None
    except click.ClickException as exc:
        raise ConfigError(f"GUNICORN_CMD_ARGS: {exc.format_message()}") from None
    values = {name: value for name, value in ctx.params.items()
              if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    values.pop("app", None)  # gunicorn ignores an APP there too
    for name in ("check_config", "print_config"):
        values.pop(name, None)
    return values, values.pop("config", None)


def prepare(command: click.Command, argv: list[str]) -> dict[str, Any]:
    """Before click parses for real: read -c (or ./gunicorn.conf.py) and GUNICORN_CMD_ARGS.

    Returns the extra keywords for ``Command.main`` (default_map and obj). A broken config
    file is one "Error:" line and exit 2 (1 under --check-config), as the CLI reports options.
    """
    if any(arg in ("--help", "-h", "--version") for arg in argv):
        return {"obj": Sources()}  # answered before any file is read, as gunicorn does
    pre = command.make_context("asgiserve", list(argv), resilient_parsing=True)
    sources = Sources(check=bool(pre.params.get("check_config")))
    params = {p.name: p for p in command.params if p.name}
    try:
        from_env, env_location = _cmd_args(command, sources)
        location = pre.params.get("config") or env_location
        if location:
            label, names = read_location(location)
            sources.notes.insert(0, (logging.INFO, f"Configuration file: {label}"))
        elif os.path.isfile(DEFAULT_FILE):
            label, names = read_location(DEFAULT_FILE)
            sources.notes.insert(0, (logging.INFO, f"Configuration file: ./{DEFAULT_FILE} (found in the current "
                                                   "directory, as gunicorn does; -c FILE picks another)"))
        else:
            label, names = None, {}
        if label is not None:
            sources.label = label
            read_settings(names, label, params, sources)
        for name, value in from_env.items():
            sources.defaults[name] = value
            sources.origins[name] = "environment GUNICORN_CMD_ARGS"
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1 if sources.check else exc.exit_code)
    return {"default_map": sources.defaults, "obj": sources}


SOURCE_OPTIONS = ("config", "check_config", "print_config")  # command-line only: no Config field


def cli_options() -> list[click.Parameter]:
    """-c/--config, --check-config, --print-config: how the command reads and shows its sources."""
    return [
        click.Option(["-c", "--config"], envvar="ASGISERVE_CONFIG", show_envvar=True, metavar="FILE",
                     help="Config file in gunicorn's format (Python; also file:PATH, python:MODULE). Default: "
                          "./gunicorn.conf.py when present."),
        click.Option(["--check-config"], is_flag=True,
                     help="Load the configuration and the app, then exit: 0 if they are fine, else 1 and why."),
        click.Option(["--print-config"], is_flag=True,
                     help="Print every option's effective value and where it came from, then exit."),
    ]


def resolve(params: dict[str, Any]) -> tuple[str, Sources, dict[str, str]]:
    """In the command's callback: the mode ("", "check", "print"), the sources, and where each
    final value came from. Pops the -c/--check-config/--print-config values from ``params``.
    A platform default (WEB_CONCURRENCY, FORWARDED_ALLOW_IPS) yields to the config file, as in
    gunicorn; a logconfig_dict from the file replaces the file's logconfig, not --log-config."""
    ctx = click.get_current_context()
    sources = ctx.obj if isinstance(ctx.obj, Sources) else Sources()
    params.pop("config", None)
    show, check = params.pop("print_config", False), params.pop("check_config", False)
    mode = "print" if show else "check" if check else ""
    Source = click.core.ParameterSource
    where: dict[str, str] = {}
    by_name = {f.name: f for f in option_fields()}
    for name in ["app", *by_name]:
        source = ctx.get_parameter_source(name)
        f = by_name.get(name)
        if source == Source.COMMANDLINE:
            where[name] = "command line"
        elif source == Source.ENVIRONMENT:
            var = next((n for n in env_names(f) if n in os.environ), "?") if f else "ASGISERVE_APP"
            if f is not None and name in sources.defaults and var == f.metadata.get("env"):
                params[name] = sources.defaults[name]  # a platform default: the file wins
                where[name] = f"{sources.origins[name]}, over {var}"
            else:
                where[name] = f"environment {var}"
        elif source == Source.DEFAULT_MAP:
            where[name] = sources.origins.get(name, "config file")
        else:
            where[name] = "default"
    if sources.logconfig_dict is not None:
        origin = where.get("log_config", "default")
        sources.apply_logconfig_dict = origin == "default" or origin.startswith("file ")
        if sources.apply_logconfig_dict and origin != "default":
            params["log_config"] = None
            where["log_config"] = f"{origin}; replaced by its logconfig_dict"
    return mode, sources, where


# -- logging, and the notes gathered before it existed ----------------------------------------
def configure_logging(config: Config) -> None:
    """The CLI's logging setup: logconfig_dict from the file when it applies, else logs' own."""
    from . import logs
    from .logconfig import apply_logconfig_dict

    sources = _current_sources()
    if sources is not None and sources.apply_logconfig_dict and sources.logconfig_dict is not None:
        apply_logconfig_dict(sources.logconfig_dict)
    else:
        logs.configure_logging(config)
    for level, message in (sources.notes if sources is not None else []):
        logger.log(level, "%s", message)
    if hooks.installed() and not config.supervised:
        logger.warning("Server hooks from the config file need the supervisor (--supervise), which is off; "
                       "they will not run.")


def _current_sources() -> Optional[Sources]:
    ctx = click.get_current_context(silent=True)
    return ctx.obj if ctx is not None and isinstance(ctx.obj, Sources) else None
