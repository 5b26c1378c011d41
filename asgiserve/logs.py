"""Logging setup and the access log.

Loggers: ``asgiserve.error`` (startup lines, errors; to stderr) and ``asgiserve.access`` (one
line per response; to stdout, like uvicorn). Both hang under ``asgiserve``, which does not
propagate to the root logger, so an app's own logging setup neither swallows nor duplicates them.

The access log is on the per-request hot path: the line format is compiled once into a list of
getters for exactly the atoms it uses, and a line is escaped only when it contains something
non-printable (one C-level ``str.isprintable()`` check per line otherwise). Escaping matters
because paths, query strings and headers come from the client: a raw CR/LF would let anyone
forge log lines.
"""
from __future__ import annotations

import base64
import json
import logging
import logging.config
import os
import re
import sys
import time
from typing import Any, Callable, Iterable, Optional

from .config import Config
from .errors import ConfigError

TRACE = 5
LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
logging.addLevelName(TRACE, "TRACE")

DEFAULT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"

Scope = dict[str, Any]
Headers = Iterable[tuple[bytes, bytes]]


class _NotAccess(logging.Filter):
    """Keeps access records (which have their own handler) off the error stream."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "asgiserve.access"


def configure_logging(config: Config) -> None:
    """Apply --log-config, or our default handlers at --log-level. Safe to call again."""
    if config.log_config:
        load_log_config(config.log_config)
        return
    level = LEVELS[config.log_level]
    base = logging.getLogger("asgiserve")
    if config.capture_output and _is_file(config.error_logfile):
        capture_output(str(config.error_logfile))  # before the handler: it may write to stderr
    _set_handler(base, _destination(config.error_logfile, sys.stderr, "--error-logfile"),
                 logging.Formatter(DEFAULT_FORMAT, DATE_FORMAT))
    base.handlers[-1].addFilter(_NotAccess())
    base.setLevel(level)
    base.propagate = False
    access = logging.getLogger("asgiserve.access")
    # A gunicorn-style format carries its own fields (%(t)s ...), so it is written bare.
    fmt = "%(message)s" if config.access_log_format else DEFAULT_FORMAT
    _set_handler(access, _destination(config.access_logfile, sys.stdout, "--access-logfile"),
                 logging.Formatter(fmt, DATE_FORMAT))
    access.setLevel(level if config.access_log else logging.WARNING)


def _is_file(path: Optional[str]) -> bool:
    return path is not None and path != "-"


def _destination(path: Optional[str], stream: Any, flag: str) -> logging.Handler:
    """--access-logfile/--error-logfile: '-' (or unset) is the stream, anything else a file
    appended to, and reopened on SIGUSR1 (reopen_log_files) after logrotate moved it."""
    if not _is_file(path):
        return logging.StreamHandler(stream)
    try:
        return logging.FileHandler(str(path), mode="a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot open: {exc.strerror or exc}") from None


_captured: list[Any] = []  # --capture-output: the open error log file that fds 1 and 2 point to


def capture_output(path: str) -> None:
    """--capture-output: point fds 1 and 2 at the error log file, so the app's print() and
    anything else written to stdout/stderr lands there (gunicorn's behaviour)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing to flush
            pass
    try:
        target = open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--error-logfile {path}: cannot open: {exc.strerror or exc}") from None
    os.dup2(target.fileno(), 1)
    os.dup2(target.fileno(), 2)
    for old in _captured:
        old.close()
    _captured[:] = [target]


def reopen_log_files() -> None:
    """SIGUSR1 (logrotate's postrotate, as with gunicorn): reopen every log file by its name, so
    lines go to the new file once the old one was moved; --capture-output's fds too."""
    if _captured:
        capture_output(_captured[0].name)
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
            except OSError:  # the directory went away: keep logging nowhere rather than crash
                handler.stream = None
            finally:
                handler.release()


def _set_handler(logger: logging.Logger, handler: logging.Handler, formatter: logging.Formatter) -> None:
    for old in list(logger.handlers):
        if getattr(old, "_asgiserve", False):  # only ever replace our own handlers
            logger.removeHandler(old)
    handler.setFormatter(formatter)
    handler._asgiserve = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


def load_log_config(path: str) -> None:
    """--log-config: JSON (dictConfig), or a logging .ini file (fileConfig)."""
    if not os.path.isfile(path):
        raise ConfigError(f"--log-config {path}: no such file")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            data.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(data)
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise ConfigError(f"--log-config {path}: YAML needs PyYAML installed") from None
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
            data.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(data)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"--log-config {path}: {type(exc).__name__}: {exc}") from None


# -- escaping ---------------------------------------------------------------------------
def escape(text: str) -> str:
    """Replace every non-printable character with a visible escape (\\n, \\x1b, \\u2028...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- the access logger ------------------------------------------------------------------
LineFn = Callable[[Scope, int, Headers, int, float], str]


class AccessLogger:
    """One line per completed response. ``enabled`` is read once per request by the core."""

    def __init__(self, config: Config) -> None:
        from .statsd import from_config

        self.logger = logging.getLogger("asgiserve.access")
        self.lines = bool(config.access_log) and self.logger.isEnabledFor(logging.INFO)
        self.statsd = from_config(config)  # gunicorn's request metrics are made where the line is
        self.enabled = self.lines or self.statsd is not None
        self.render: LineFn = compile_format(config.access_log_format) if config.access_log_format else default_line
        self._info = self.logger.info
        self.metrics: Any = None  # --metrics: ServerState sets its metrics.ServerMetrics here

    def log(self, scope: Scope, status: int, response_headers: Headers, bytes_sent: int, duration: float) -> None:
        if self.metrics is not None:
            self.metrics.request(status, duration)
            if not self.lines and self.statsd is None:
                return
        if self.statsd is not None:
            self.statsd.request(status, duration)
            if not self.lines:
                return
        line = self.render(scope, status, response_headers, bytes_sent, duration)
        if not line.isprintable():
            line = escape(line)
        self._info(line)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "unix"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quoted(text: str) -> str:
    """A value from the client or the app, printed inside "...": its own quotes must not end the
    field (nginx's escape), or a log parser would split it wrongly."""
    return text.replace('"', "\\x22") if '"' in text else text


def _target(scope: Scope) -> str:
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope["query_string"]
    if query:
        return _quoted((raw + b"?" + query).decode("latin-1"))
    return _quoted(raw.decode("latin-1"))


def default_line(scope: Scope, status: int, headers: Headers, nbytes: int, duration: float) -> str:
    """127.0.0.1:51234 - "GET /path?q HTTP/1.1" 200 1234 0.8ms"""
    return '%s - "%s %s HTTP/%s" %d %d %.1fms' % (
        _client(scope), scope["method"], _target(scope), scope["http_version"], status, nbytes, duration * 1000.0
    )


# gunicorn's atoms. Each getter takes (scope, status, response_headers, bytes_sent, duration).
def _request_header(name: bytes) -> Callable[..., str]:
    def get(scope: Scope, *_: Any) -> str:
        values = [v for k, v in scope["headers"] if k == name]
        return _quoted(b",".join(values).decode("latin-1")) if values else "-"

    return get


def _response_header(name: bytes) -> Callable[..., str]:
    def get(scope: Scope, status: int, headers: Headers, *_: Any) -> str:
        values = [v for k, v in headers if k.lower() == name]
        return _quoted(b",".join(values).decode("latin-1")) if values else "-"

    return get


def _user(scope: Scope, *_: Any) -> str:
    for k, v in scope["headers"]:
        if k == b"authorization" and v[:6].lower() == b"basic ":
            try:
                return _quoted(base64.b64decode(v[6:].strip()).decode("utf-8").split(":", 1)[0]) or "-"
            except ValueError:
                return "-"
    return "-"


_now_second = [0, ""]


def _time(*_: Any) -> str:
    now = int(time.time())
    if now != _now_second[0]:  # strftime at most once a second
        _now_second[0] = now
        _now_second[1] = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(now))
    return str(_now_second[1])


ATOMS: dict[str, Callable[..., Any]] = {
    "h": lambda scope, *_: scope["client"][0] if scope.get("client") else "-",
    "l": lambda *_: "-",
    "u": _user,
    "t": _time,
    "r": lambda scope, *_: "%s %s HTTP/%s" % (scope["method"], _target(scope), scope["http_version"]),
    "m": lambda scope, *_: scope["method"],
    "U": lambda scope, *_: _quoted(scope["path"]),
    "q": lambda scope, *_: _quoted(scope["query_string"].decode("latin-1")),
    "H": lambda scope, *_: "HTTP/" + scope["http_version"],
    "s": lambda scope, status, *_: status,
    "B": lambda scope, status, headers, nbytes, *_: nbytes,
    "b": lambda scope, status, headers, nbytes, *_: str(nbytes) if nbytes else "-",
    "f": _request_header(b"referer"),
    "a": _request_header(b"user-agent"),
    "T": lambda *args: int(args[4]),
    "M": lambda *args: int(args[4] * 1_000),
    "D": lambda *args: int(args[4] * 1_000_000),
    "L": lambda *args: "%.6f" % args[4],
    "p": lambda *_: "<%d>" % os.getpid(),
}

_KEY = re.compile(r"%\(([^)]*)\)")


def _atom(key: str) -> Callable[..., Any]:
    if key in ATOMS:
        return ATOMS[key]
    if key.startswith("{") and "}" in key:
        name, _, kind = key[1:].rpartition("}")
        if kind == "i":
            return _request_header(name.lower().encode("latin-1"))
        if kind == "o":
            return _response_header(name.lower().encode("latin-1"))
        if kind == "e":
            value = os.environ.get(name, "-")
            return lambda *_: value
    return lambda *_: "-"  # unknown atoms print "-", as in gunicorn


def compile_format(fmt: str) -> LineFn:
    """Compile a gunicorn --access-log-format once; raise ConfigError if it cannot format."""
    getters = [(key, _atom(key)) for key in dict.fromkeys(_KEY.findall(fmt))]

    def render(scope: Scope, status: int, headers: Headers, nbytes: int, duration: float) -> str:
        return fmt % {key: get(scope, status, headers, nbytes, duration) for key, get in getters}

    sample: Scope = {
        "type": "http", "http_version": "1.1", "method": "GET", "path": "/", "raw_path": b"/",
        "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "root_path": "",
    }
    try:
        render(sample, 200, [], 0, 0.0)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"--access-log-format {fmt!r} is not a valid format: {exc}") from None
    return render
