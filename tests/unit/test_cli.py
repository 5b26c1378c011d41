"""The click command, in-process (CliRunner), with the server replaced by a recorder."""
from __future__ import annotations

import os
import sys
import types
from typing import Any, Callable

import pytest
from click.testing import CliRunner, Result

from asgiserve import cli as cli_module
from asgiserve.app_loader import AppImportError
from asgiserve.config import Config, env_names, option_fields
from asgiserve.errors import AppLoadError, BindError, LifespanError


def _clean_env() -> dict[str, Any]:
    names = [n for f in option_fields() for n in env_names(f)] + ["ASGISERVE_APP"]
    return {n: None for n in names if n in os.environ}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    seen: list[Config] = []
    monkeypatch.setattr("asgiserve.server.run", lambda config, sockets=None: seen.append(config))
    monkeypatch.setattr("asgiserve.logs.configure_logging", lambda config: None)
    return seen


def invoke(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli_module.cli, list(args), env={**_clean_env(), **env})


def test_app_argument_and_common_flags(recorder: list[Config]) -> None:
    result = invoke(
        "-b", "127.0.0.1:9000", "--bind", "unix:/tmp/x.sock", "-m", "007", "--header", "X-A: 1",
        "--header", "X-B: two words", "--no-access-log", "--http", "H11", "--loop", "asyncio",
        "--factory", "--app-dir", "src", "--graceful-timeout", "3", "-w", "1", "pkg.mod:make.app",
    )
    assert result.exit_code == 0, result.output
    config = recorder[0]
    assert config.app == "pkg.mod:make.app"
    assert config.bind == ("127.0.0.1:9000", "unix:/tmp/x.sock")
    assert config.umask == 0o007
    assert config.headers == ("X-A: 1", "X-B: two words")
    assert config.access_log is False
    assert config.http == "h11"  # choices are case-insensitive, normalised
    assert config.loop == "asyncio"
    assert config.factory is True and config.app_dir == "src"
    assert config.timeout_graceful_shutdown == 3.0


def test_uvicorn_spelling(recorder: list[Config]) -> None:
    result = invoke("--host", "::1", "--port", "0", "--uds", "/tmp/u.sock", "--root-path", "/api", "main:app")
    assert result.exit_code == 0, result.output
    assert recorder[0].bind_specs == ("unix:/tmp/u.sock", "[::1]:0")
    assert recorder[0].root_path == "/api"


def test_without_app_serves_the_demo(recorder: list[Config], monkeypatch: pytest.MonkeyPatch) -> None:
    messages: list[str] = []
    monkeypatch.setattr(cli_module.logger, "info", lambda msg, *a: messages.append(msg % a))
    result = invoke()
    assert result.exit_code == 0, result.output
    assert recorder[0].app == "asgiserve.demo:app"
    assert any("demo" in m for m in messages)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--bogus", "m:a"], "--bogus"),
        (["--port", "eighty", "m:a"], "'eighty' is not a valid integer"),
        (["--http", "h3", "m:a"], "'h3' is not one of"),
        (["-m", "9", "m:a"], "not an octal number"),
        (["-m", "1000", "m:a"], "between 000 and 777"),
        (["--log-config", "/nonexistent/log.json", "m:a"], "does not exist"),
        (["a:b", "c:d"], "unexpected extra argument"),
    ],
)
def test_usage_errors_exit_2_with_one_line(recorder: list[Config], args: list[str], fragment: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0]
    assert "--help" in lines[0]
    assert recorder == []


def test_config_error_exits_2_with_one_line(recorder: list[Config]) -> None:
    result = invoke("--backlog", "0", "m:a")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --backlog must be at least 1"
    assert recorder == []


@pytest.mark.parametrize(
    "error",
    [
        AppLoadError('could not import module "nope"'),
        BindError("could not bind to 127.0.0.1:8000: address already in use"),
        LifespanError("Application startup failed: database down"),
    ],
)
def test_startup_errors_exit_3_with_one_line(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    monkeypatch.setattr("asgiserve.logs.configure_logging", lambda config: None)
    monkeypatch.setattr("asgiserve.server.run", _raiser(error))
    result = invoke("m:a")
    assert result.exit_code == 3
    assert result.stderr.strip() == f"Error: {error}"


def test_error_inside_user_module_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def user_code() -> None:
        import definitely_not_installed_xyz  # noqa: F401

    try:
        user_code()
    except ImportError as exc:
        error = AppImportError(f'error while importing module "m": {exc}', exc)
    monkeypatch.setattr("asgiserve.logs.configure_logging", lambda config: None)
    monkeypatch.setattr("asgiserve.server.run", _raiser(error))
    result = invoke("m:a")
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.stderr
    assert "import definitely_not_installed_xyz" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('Error: error while importing module "m"')


def _raiser(error: Exception) -> Callable[..., None]:
    def run(config: Config, sockets: Any = None) -> None:
        raise error

    return run


def test_workers_use_the_supervisor(monkeypatch: pytest.MonkeyPatch, recorder: list[Config]) -> None:
    seen: list[Config] = []
    fake = types.ModuleType("asgiserve.workers.supervisor")
    fake.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asgiserve.workers.supervisor", fake)
    result = invoke("-w", "2", "m:a")
    assert result.exit_code == 0, result.output
    assert seen[0].workers == 2 and recorder == []


def test_workers_without_supervisor_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, recorder: list[Config]) -> None:
    monkeypatch.setitem(sys.modules, "asgiserve.workers.supervisor", None)  # import raises ImportError
    result = invoke("--workers", "2", "m:a")
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker supervisor" in lines[0]


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    from asgiserve import __version__

    assert result.stdout.startswith(f"asgiserve {__version__} (")
    assert "h11" in result.stdout


def test_help_lists_every_flag() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for f in option_fields():
        flags = f.metadata["flags"] or (f"--{f.name.replace('_', '-')}",)
        for flag in flags:
            assert flag in result.stdout, flag
        if f.metadata["secondary"]:
            assert f.metadata["secondary"] in result.stdout


def test_main_entry_point_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_module.main(["--no-such-flag"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--forwarded-allow-ips", "10.0.0.0/40"], "--forwarded-allow-ips"),
        (["--access-log-format", "%(s)d %("], "--access-log-format"),
    ],
)
def test_runtime_parsed_values_are_checked_up_front(recorder: list[Config], args: list[str], fragment: str) -> None:
    result = invoke(*args, "m:a")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0]
    assert recorder == []
