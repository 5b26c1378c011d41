"""Logging setup, access-line formats (default and gunicorn atoms), and log-injection escaping."""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from asgiserve import logs
from asgiserve.config import Config
from asgiserve.errors import ConfigError
from asgiserve.logs import AccessLogger, compile_format, configure_logging, default_line, escape


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """configure_logging changes process-wide loggers: put them back for the other tests."""
    names = ["asgiserve", "asgiserve.access", "asgiserve.error", "custom"]
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled


def scope(**overrides: Any) -> dict[str, Any]:
    base = {
        "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/caf\u00e9 menu", "raw_path": b"/caf%C3%A9%20menu", "query_string": b"q=1&x=y",
        "root_path": "", "client": ("127.0.0.1", 51234), "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"example.org"), (b"user-agent", b"curl/8.0"), (b"referer", b"http://ref/"),
            (b"x-multi", b"a"), (b"x-multi", b"b"),
            (b"authorization", b"Basic YWxpY2U6c2VjcmV0"),  # alice:secret
        ],
    }
    base.update(overrides)
    return base


RESPONSE_HEADERS = [(b"Content-Type", b"text/plain"), (b"content-length", b"5")]


# -- the default line ---------------------------------------------------------------------
def test_default_line() -> None:
    line = default_line(scope(), 200, RESPONSE_HEADERS, 1234, 0.0125)
    assert line == '127.0.0.1:51234 - "GET /caf%C3%A9%20menu?q=1&x=y HTTP/1.1" 200 1234 12.5ms'


def test_default_line_ipv6_unix_and_no_query() -> None:
    assert default_line(scope(client=("::1", 5), query_string=b""), 404, [], 0, 0.0).startswith(
        '[::1]:5 - "GET /caf%C3%A9%20menu HTTP/1.1" 404 0'
    )
    assert default_line(scope(client=None), 200, [], 0, 0.0).startswith("unix - ")


# -- gunicorn atoms -----------------------------------------------------------------------
def test_all_gunicorn_atoms() -> None:
    fmt = " | ".join(
        f"%({a})s" for a in ["h", "l", "u", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L", "p"]
    )
    line = compile_format(fmt)(scope(), 201, RESPONSE_HEADERS, 5, 1.5)
    assert line.split(" | ") == [
        "127.0.0.1", "-", "alice", "GET /caf%C3%A9%20menu?q=1&x=y HTTP/1.1", "GET", "/caf\u00e9 menu", "q=1&x=y",
        "HTTP/1.1", "201", "5", "5", "http://ref/", "curl/8.0", "1", "1500", "1500000", "1.500000",
        f"<{os.getpid()}>",
    ]


def test_time_atom() -> None:
    line = compile_format("%(t)s")(scope(), 200, [], 0, 0.0)
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", line), line


def test_header_atoms_are_case_insensitive() -> None:
    render = compile_format("%({User-Agent}i)s %({X-MULTI}i)s %({content-type}o)s %({missing}i)s %({nope}o)s")
    assert render(scope(), 200, RESPONSE_HEADERS, 0, 0.0) == "curl/8.0 a,b text/plain - -"


def test_env_atom_and_unknown_atom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_COLOR", "blue")
    assert compile_format("%({DEPLOY_COLOR}e)s %(zz)s %({x}z)s")(scope(), 200, [], 0, 0.0) == "blue - -"


def test_numeric_specs_and_empty_body() -> None:
    render = compile_format('%(h)s "%(r)s" %(s)d %(b)s %(B)d %(D)dus')
    assert render(scope(), 304, [], 0, 0.000250).endswith('" 304 - 0 250us')


def test_gunicorn_default_format() -> None:
    fmt = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    line = compile_format(fmt)(scope(headers=[]), 200, [], 12, 0.0)
    assert line.startswith('127.0.0.1 - - [') and line.endswith('"GET /caf%C3%A9%20menu?q=1&x=y HTTP/1.1" 200 12 "-" "-"')


@pytest.mark.parametrize("fmt", ["%(s)d %(", "%(h)d", "%(s)s %z"])
def test_invalid_format_is_a_config_error(fmt: str) -> None:
    with pytest.raises(ConfigError, match="--access-log-format"):
        compile_format(fmt)


def test_bad_basic_auth_is_dash() -> None:
    s = scope(headers=[(b"authorization", b"Basic !!notbase64")])
    assert compile_format("%(u)s")(s, 200, [], 0, 0.0) == "-"


# -- escaping -----------------------------------------------------------------------------
def test_escape() -> None:
    assert escape("plain /path é") == "plain /path é"
    assert escape("a\r\nFAKE LINE\x1b[31m\x00\u2028") == "a\\r\\nFAKE LINE\\x1b[31m\\x00\\u2028"


def test_access_log_line_cannot_be_split(caplog: pytest.LogCaptureFixture) -> None:
    logger = AccessLogger(Config(access_log_format="%(U)s %({x-evil}i)s"))
    s = scope(path="/a\r\n127.0.0.1 - \"GET /admin\" 200", headers=[(b"x-evil", b"v\x1b[2J")])
    with caplog.at_level(logging.INFO, logger="asgiserve.access"):
        logger.log(s, 200, [], 0, 0.0)
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert message == '/a\\r\\n127.0.0.1 - \\x22GET /admin\\x22 200 v\\x1b[2J'


# -- AccessLogger.enabled and configure_logging -------------------------------------------
def test_enabled_flag() -> None:
    configure_logging(Config(log_level="info"))
    assert AccessLogger(Config()).enabled is True
    assert AccessLogger(Config(access_log=False)).enabled is False
    configure_logging(Config(log_level="warning"))
    assert AccessLogger(Config()).enabled is False
    configure_logging(Config(access_log=False))
    assert logging.getLogger("asgiserve.access").isEnabledFor(logging.INFO) is False


def test_configure_logging_levels_and_trace() -> None:
    configure_logging(Config(log_level="trace"))
    base = logging.getLogger("asgiserve")
    assert base.level == logs.TRACE and logging.getLevelName(logs.TRACE) == "TRACE"
    configure_logging(Config(log_level="error"))
    assert base.level == logging.ERROR
    assert base.propagate is False


def test_configure_logging_is_idempotent_and_keeps_foreign_handlers() -> None:
    foreign = logging.NullHandler()
    logging.getLogger("asgiserve").addHandler(foreign)
    configure_logging(Config())
    configure_logging(Config())
    handlers = logging.getLogger("asgiserve").handlers
    assert foreign in handlers
    assert sum(getattr(h, "_asgiserve", False) for h in handlers) == 1
    assert sum(getattr(h, "_asgiserve", False) for h in logging.getLogger("asgiserve.access").handlers) == 1


def test_access_lines_go_to_stdout_errors_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Config())
    logging.getLogger("asgiserve.error").info("Listening on http://127.0.0.1:1")
    AccessLogger(Config()).log(scope(), 200, [], 3, 0.001)
    out, err = capsys.readouterr()
    assert "Listening on http://127.0.0.1:1" in err and "GET /caf" not in err
    assert '"GET /caf%C3%A9%20menu?q=1&x=y HTTP/1.1" 200 3' in out and "Listening" not in out
    assert "[INFO]" in err and "[INFO]" in out


def test_custom_access_format_is_written_bare(capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(access_log_format="%(m)s %(U)s %(s)s")
    configure_logging(config)
    AccessLogger(config).log(scope(), 200, [], 3, 0.001)
    assert capsys.readouterr().out == "GET /caf\u00e9 menu 200\n"


def test_log_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.json"
    path.write_text(json.dumps({
        "version": 1,
        "formatters": {"f": {"format": "JSONCFG %(name)s %(message)s"}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"}},
        "loggers": {"asgiserve": {"handlers": ["h"], "level": "DEBUG", "propagate": False}},
    }))
    configure_logging(Config(log_config=str(path)))
    logging.getLogger("asgiserve.error").debug("hello")
    assert "JSONCFG asgiserve.error hello" in capsys.readouterr().err


def test_log_config_ini(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.ini"
    path.write_text(
        "[loggers]\nkeys=root,custom\n\n[handlers]\nkeys=h\n\n[formatters]\nkeys=f\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
        "[logger_custom]\nlevel=INFO\nhandlers=h\nqualname=custom\npropagate=0\n\n"
        "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n\n"
        "[formatter_f]\nformat=INICFG %(message)s\n"
    )
    configure_logging(Config(log_config=str(path)))
    logging.getLogger("custom").info("from ini")
    assert "INICFG from ini" in capsys.readouterr().err


@pytest.mark.parametrize("content, name", [("{not json", "bad.json"), ("[loggers]\nkeys=x\n", "bad.ini")])
def test_broken_log_config_is_a_config_error(tmp_path: Path, content: str, name: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match="--log-config"):
        configure_logging(Config(log_config=str(path)))


def test_missing_log_config() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        configure_logging(Config(log_config="/nonexistent/logging.json"))


def test_quotes_from_the_client_cannot_end_a_quoted_field() -> None:
    """A '"' in a header, the path or the query is written as \\x22 (nginx's way), so a log parser
    splitting on quotes sees the same fields whatever the client sent."""
    sc = scope(headers=[(b"user-agent", b'evil" 200 "x'), (b"referer", b'"')], path='/a"b', raw_path=b'/a"b',
               query_string=b'q="')
    render = compile_format('"%(r)s" "%(a)s" "%(f)s" %(U)s %(q)s')
    line = render(sc, 200, [], 0, 0.0)
    assert line == '"GET /a\\x22b?q=\\x22 HTTP/1.1" "evil\\x22 200 \\x22x" "\\x22" /a\\x22b q=\\x22'
    assert line.count('"') == 6
    assert default_line(sc, 200, [], 0, 0.0).count('"') == 2
