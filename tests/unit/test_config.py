"""Config validation, and the single-source-of-truth contract between Config, CLI, env and run()."""
from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import click
import pytest
from click.testing import CliRunner

import asgiserve
from asgiserve import cli as cli_module
from asgiserve.config import Config, env_names, option_fields
from asgiserve.errors import ConfigError


# -- validation -------------------------------------------------------------------------
def test_defaults_are_valid_and_bind_to_localhost_8000() -> None:
    config = Config()
    assert config.bind_specs == ("127.0.0.1:8000",)
    assert config.default_headers == ()


@pytest.mark.parametrize(
    "options, specs",
    [
        ({"port": 0}, ("127.0.0.1:0",)),
        ({"host": "0.0.0.0"}, ("0.0.0.0:8000",)),
        ({"host": "::1", "port": 9}, ("[::1]:9",)),
        ({"uds": "/tmp/a.sock"}, ("unix:/tmp/a.sock",)),
        ({"fd": 3}, ("fd://3",)),
        ({"bind": ("unix:/x", "[::]:80")}, ("unix:/x", "[::]:80")),
        ({"bind": ("unix:/x",), "port": 81}, ("unix:/x", "127.0.0.1:81")),
    ],
)
def test_bind_specs(options: dict[str, Any], specs: tuple[str, ...]) -> None:
    assert Config(**options).bind_specs == specs


@pytest.mark.parametrize(
    "options, message",
    [
        ({"loop": "tornado"}, "--loop must be one of auto, asyncio, uvloop"),
        ({"http": "h2"}, "--http must be one of"),
        ({"backlog": 0}, "--backlog must be at least 1"),
        ({"workers": 0}, "--workers must be at least 1"),
        ({"timeout_keep_alive": -1}, "--timeout-keep-alive must not be negative"),
        ({"port": 70000}, "--port must be between 0 and 65535"),
        ({"limit_concurrency": 0}, "--limit-concurrency must be at least 1"),
        ({"headers": ("no-colon",)}, "is not 'Name: value'"),
        ({"headers": (": value",)}, "is not 'Name: value'"),
    ],
)
def test_invalid_values_raise_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config(**options)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        Config(backlog=0, threads=0)
    assert "--backlog" in str(info.value) and "--threads" in str(info.value)


def test_default_headers_are_lowercased_byte_pairs() -> None:
    config = Config(headers=("X-Frame-Options: DENY", "X-Thing:a:b"))
    assert config.default_headers == ((b"x-frame-options", b"DENY"), (b"x-thing", b"a:b"))


def test_config_is_frozen_and_picklable() -> None:
    config = Config(port=1234, bind=("unix:/x",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(config)) == config
    assert config.replace(port=5).port == 5


def test_sequence_defaults_must_be_tuples() -> None:
    from asgiserve.config import opt

    with pytest.raises(TypeError):
        opt([], "help")


# -- one source of truth: CLI flags <-> Config fields ------------------------------------
def _cli_options() -> list[click.Option]:
    from asgiserve.config_file import SOURCE_OPTIONS  # -c, --check-config, --print-config: not settings

    return [p for p in cli_module.cli.params if isinstance(p, click.Option)
            and p.name != "version" and p.name not in SOURCE_OPTIONS]


def test_every_cli_option_maps_to_a_config_field_and_back() -> None:
    option_names = [p.name for p in _cli_options()]
    field_names = [f.name for f in option_fields()]
    assert sorted(option_names) == sorted(field_names)
    assert len(option_names) == len(set(option_names))
    all_fields = {f.name for f in dataclasses.fields(Config)}
    assert set(field_names) <= all_fields
    assert all_fields - set(field_names) == {"app"}  # the positional argument


def test_no_flag_spelling_is_declared_twice() -> None:
    spellings = [s for p in _cli_options() for s in p.opts + p.secondary_opts]
    spellings += ["--version", "--help", "-h"]
    assert len(spellings) == len(set(spellings)), spellings


def test_flags_follow_the_field_metadata() -> None:
    by_name = {p.name: p for p in _cli_options()}
    for f in option_fields():
        option = by_name[f.name]
        flags = f.metadata["flags"] or (f"--{f.name.replace('_', '-')}",)
        assert set(flags) <= set(option.opts), f.name
        if f.metadata["secondary"]:
            assert option.secondary_opts == [f.metadata["secondary"]]
        assert option.multiple == f.metadata["multiple"], f.name
        assert option.is_flag == f.metadata["is_flag"], f.name
        if f.metadata["choices"]:
            assert isinstance(option.type, click.Choice)
            assert tuple(option.type.choices) == f.metadata["choices"]
        assert option.help == f.metadata["help"]
        assert option.envvar == env_names(f)


def test_every_option_has_an_asgiserve_env_var_and_the_extra_ones() -> None:
    by_name = {p.name: p for p in _cli_options()}
    for f in option_fields():
        assert f"ASGISERVE_{f.name.upper()}" in by_name[f.name].envvar
    assert "WEB_CONCURRENCY" in by_name["workers"].envvar
    assert "FORWARDED_ALLOW_IPS" in by_name["forwarded_allow_ips"].envvar


def test_cli_defaults_give_the_default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Running with no flags builds exactly Config()'s defaults (plus the demo app)."""
    seen = _capture(monkeypatch)
    result = CliRunner().invoke(cli_module.cli, [], env=_clean_env())
    assert result.exit_code == 0, result.output
    assert seen[0] == Config(app=cli_module.DEMO_APP)


def _clean_env() -> dict[str, Any]:
    import os

    names = [n for f in option_fields() for n in env_names(f)] + ["ASGISERVE_APP"]
    return {n: None for n in names if n in os.environ}


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    seen: list[Config] = []
    monkeypatch.setattr("asgiserve.server.run", lambda config, sockets=None: seen.append(config))
    monkeypatch.setattr("asgiserve.logs.configure_logging", lambda config: None)
    return seen


@pytest.mark.parametrize(
    "env, field, expected",
    [
        ({"ASGISERVE_PORT": "9001"}, "port", 9001),
        ({"ASGISERVE_HTTP": "h11"}, "http", "h11"),
        ({"ASGISERVE_ACCESS_LOG": "false"}, "access_log", False),
        ({"ASGISERVE_PROXY_HEADERS": "0"}, "proxy_headers", False),
        ({"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}, "forwarded_allow_ips", "10.0.0.0/8"),
        ({"ASGISERVE_FORWARDED_ALLOW_IPS": "*", "FORWARDED_ALLOW_IPS": "1.2.3.4"}, "forwarded_allow_ips", "*"),
        ({"ASGISERVE_UMASK": "027"}, "umask", 0o27),
        ({"ASGISERVE_BIND": "127.0.0.1:1 unix:/tmp/x.sock"}, "bind", ("127.0.0.1:1", "unix:/tmp/x.sock")),
        ({"ASGISERVE_HEADERS": "X-A: one two\nX-B: three"}, "headers", ("X-A: one two", "X-B: three")),
        ({"ASGISERVE_TIMEOUT_KEEP_ALIVE": "2.5"}, "timeout_keep_alive", 2.5),
        ({"ASGISERVE_LIMIT_CONCURRENCY": "7"}, "limit_concurrency", 7),
    ],
)
def test_env_vars_reach_config(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str, expected: Any
) -> None:
    seen = _capture(monkeypatch)
    result = CliRunner().invoke(cli_module.cli, ["main:app"], env={**_clean_env(), **env})
    assert result.exit_code == 0, result.output
    assert getattr(seen[0], field) == expected


def test_web_concurrency_sets_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    seen: list[Config] = []
    fake = types.ModuleType("asgiserve.workers.supervisor")
    fake.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asgiserve.workers.supervisor", fake)
    monkeypatch.setattr("asgiserve.logs.configure_logging", lambda config: None)
    result = CliRunner().invoke(cli_module.cli, ["main:app"], env={**_clean_env(), "WEB_CONCURRENCY": "3"})
    assert result.exit_code == 0, result.output
    assert seen[0].workers == 3


def test_command_line_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch)
    result = CliRunner().invoke(cli_module.cli, ["--port", "1", "m:a"], env={**_clean_env(), "ASGISERVE_PORT": "2"})
    assert result.exit_code == 0, result.output
    assert seen[0].port == 1


def test_app_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch)
    result = CliRunner().invoke(cli_module.cli, [], env={**_clean_env(), "ASGISERVE_APP": "pkg.mod:app"})
    assert result.exit_code == 0, result.output
    assert seen[0].app == "pkg.mod:app"


# -- asgiserve.run() takes the same options ---------------------------------------------
def test_run_accepts_every_config_field(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch)
    options = {f.name: f.default for f in option_fields()}
    options.update(port=0, log_level="warning", http="h11")
    asgiserve.run("main:app", **options)
    assert seen[0] == Config(app="main:app", **options)


def test_run_rejects_unknown_keywords_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _capture(monkeypatch)
    with pytest.raises(TypeError, match="'prot'"):
        asgiserve.run("main:app", prot=8000)


def test_run_raises_config_error_instead_of_exiting(monkeypatch: pytest.MonkeyPatch) -> None:
    _capture(monkeypatch)
    with pytest.raises(ConfigError):
        asgiserve.run("main:app", backlog=0)


def test_public_api() -> None:
    assert set(asgiserve.__all__) == {"Config", "Server", "run", "__version__"}
    from asgiserve.server import Server

    assert asgiserve.Server is Server and asgiserve.Config is Config
    assert isinstance(asgiserve.__version__, str)


def test_readme_documents_every_flag() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("### Options", 1)[1].split("###", 1)[0]
    for f in option_fields():
        flags = f.metadata["flags"] or (f"--{f.name.replace('_', '-')}",)
        for flag in flags + ((f.metadata["secondary"],) if f.metadata["secondary"] else ()):
            assert f"`{flag}`" in table, f"README's options table lacks {flag}"


@pytest.mark.parametrize("header", ["Bad Name: v", "X-A: b\r\nSet-Cookie: evil=1", "X-A: b\x00", "X-E: \u20ac", "X(: v"])
def test_invalid_default_header_rejected(header: str) -> None:
    """--header lines go on the wire with every response: nothing that could split or corrupt it."""
    with pytest.raises(ConfigError, match="--header"):
        Config(app="main:app", headers=(header,))
    assert Config(app="main:app", headers=("X-Ok: caf\u00e9, tab\there",)).default_headers == (
        (b"x-ok", "caf\u00e9, tab\there".encode("latin-1")),
    )


@pytest.mark.parametrize("options", [{"supervise": True}, {"max_requests": 5}, {"workers": 2}])
def test_run_supervises_when_the_cli_would(monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]) -> None:
    single = _capture(monkeypatch)
    supervised: list[Config] = []
    monkeypatch.setattr("asgiserve.workers.supervisor.run", lambda config: supervised.append(config))
    asgiserve.run("main:app", port=0, **options)
    assert single == [] and len(supervised) == 1
