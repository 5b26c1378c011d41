"""The config-file pieces on their own: gunicorn's names and values, hooks, logconfig_dict, the
objects hooks get. Real processes are in tests/integration/test_config_file.py."""
from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from asgiserve import cli, hooks, logconfig
from asgiserve.config import Config, option_fields
from asgiserve.config_file import Sources, read_settings
from asgiserve.gunicorn_names import GUNICORN, NOT_APPLICABLE
from asgiserve.errors import ConfigError
from asgiserve.request_hooks import Request, RequestHooks


@pytest.fixture(autouse=True)
def no_hooks() -> Any:
    yield
    hooks.install({})


def settings(**names: Any) -> Sources:
    sources = Sources()
    read_settings(names, "conf.py", {p.name: p for p in cli.cli.params if p.name}, sources)
    return sources


def test_every_gunicorn_setting_maps_to_a_field_or_says_why_not() -> None:
    fields = {f.name for f in option_fields()} | {"app"}
    assert {target for target in GUNICORN.values()} <= fields  # nothing pending in this version
    assert not set(GUNICORN) & set(NOT_APPLICABLE) and not set(GUNICORN) & set(hooks.HOOKS)


def test_gunicorn_values_become_option_values() -> None:
    sources = settings(
        bind="0.0.0.0:8000", umask="0o22", cert_reqs=ssl.CERT_REQUIRED, forwarded_allow_ips=["10.0.0.1", "::1"],
        limit_request_field_size=0, loglevel="WARNING", keepalive=2, user=1000, raw_env="A=1", preload_app=1,
        certfile="c.pem", ca_certs="ca.pem",
    )
    assert sources.defaults == {
        "bind": ("0.0.0.0:8000",), "umask": 0o22, "ssl_cert_reqs": "2", "forwarded_allow_ips": "10.0.0.1,::1",
        "limit_request_field_size": 1 << 20, "log_level": "warning", "timeout_keep_alive": 2.0, "user": "1000",
        "env": ("A=1",), "preload": True, "ssl_certfile": "c.pem", "ssl_ca_certs": "ca.pem",
    }
    Config(app="a:b", **sources.defaults)  # and Config takes them


def test_asgiserve_names_work_too_and_win_over_gunicorn_aliases() -> None:
    sources = settings(timeout_keep_alive=9, keepalive=2, ws_max_size="1024")
    assert sources.defaults == {"timeout_keep_alive": 9.0, "ws_max_size": 1024}
    assert sources.origins["timeout_keep_alive"] == "file conf.py"


def test_host_and_port_are_helpers_when_bind_is_set() -> None:
    # uvicorn-gunicorn-docker's gunicorn_conf.py: host and port feed bind.
    sources = settings(host="0.0.0.0", port="80", bind="0.0.0.0:80")
    assert sources.defaults == {"bind": ("0.0.0.0:80",)}
    assert sources.notes == [(20, "conf.py: host, port ignored: bind says where to listen.")]
    assert settings(host="0.0.0.0", port="81").defaults == {"host": "0.0.0.0", "port": 81}


@pytest.mark.parametrize("names, message", [
    ({"workers": "lots"}, "conf.py: workers = 'lots': 'lots' is not a valid integer."),
    ({"loglevel": "verbose"}, "conf.py: loglevel = 'verbose': 'verbose' is not one of"),
    ({"bind": {"a": 1}}, "conf.py: bind = {'a': 1}"),
    ({"timeout": [1, 2]}, "conf.py: timeout = [1, 2]: expected one value"),
    ({"pythonpath": "a,b"}, "pythonpath: asgiserve takes one directory"),
    ({"post_fork": 3}, "conf.py: post_fork must be a function or 'module:function', not int"),
    ({"post_fork": lambda server: None}, "conf.py: post_fork must take 2 positional argument(s)"),
    ({"when_ready": "os.path:nosuch"}, "conf.py: when_ready = 'os.path:nosuch': AttributeError"),
    ({"logconfig_dict": "x"}, "conf.py: logconfig_dict must be a dict, not str"),
])
def test_bad_values_are_one_line_naming_the_setting(names: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**names)
    assert str(info.value).startswith(message)


def test_hooks_are_callables_or_dotted_strings_and_imply_the_supervisor() -> None:
    calls: list[tuple[Any, ...]] = []

    def two(worker: Any, req: Any) -> None:
        calls.append((worker, req))

    sources = settings(on_exit="os.path.basename", when_ready="os.path:dirname", post_request=two, pre_fork=None)
    installed = hooks.installed()
    assert installed["on_exit"] is __import__("os").path.basename and "pre_fork" not in installed
    installed["post_request"]("w", "r", {}, "resp")  # gunicorn also takes a post_request of 2 or 3 parameters
    assert calls == [("w", "r")]
    assert sources.defaults["supervise"] is True


def test_not_applicable_settings_at_their_default_say_nothing() -> None:
    assert settings(daemon=False, sendfile=None, proxy_protocol=False, suppress_ragged_eofs=True,
                    spew=False).notes == []
    assert [n for _, n in settings(spew=True).notes] == ["conf.py: spew is not applicable: no line tracing; use a "
                                                         "debugger or py-spy; ignored."]


def test_logconfig_dict_for_gunicorn_also_configures_asgiserve_loggers() -> None:
    user = {"loggers": {"gunicorn.error": {"level": "WARNING", "handlers": ["console"], "qualname": "gunicorn.error"},
                        "uvicorn.access": {"level": "INFO", "handlers": []}}}
    merged = logconfig.merged(user)
    assert merged["loggers"]["asgiserve.error"] == {"level": "WARNING", "handlers": ["console"]}
    assert merged["loggers"]["asgiserve.access"] == {"level": "INFO", "handlers": []}
    assert "gunicorn.error" in merged["loggers"] and merged["handlers"] == logconfig.DEFAULTS["handlers"]
    assert merged["root"] == logconfig.DEFAULTS["root"]
    with pytest.raises(ConfigError, match="logconfig_dict: "):
        logconfig.apply_logconfig_dict({"handlers": {"x": {"class": "no.such.Handler"}}})


def test_settings_view_answers_gunicorn_and_asgiserve_names() -> None:
    view = hooks.Settings(Config(app="a:b", workers=3, timeout_keep_alive=4, preload=True, pid="/p"))
    assert (view.workers, view.keepalive, view.timeout_keep_alive, view.preload_app, view.pidfile) == (
        3, 4, 4, True, "/p")
    assert view.bind == ["127.0.0.1:8000"] and view.wsgi_app == "a:b" and view.post_fork is None
    with pytest.raises(AttributeError):
        view.nonsense  # noqa: B018


def test_request_hooks_see_what_gunicorn_hooks_see() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    def post(worker: Any, req: Any, environ: Any, resp: Any) -> None:
        seen.append((worker, req.method, req.uri, req.version, req.headers, resp.status, resp.status_code,
                     environ["HTTP_X_A"], environ["REMOTE_ADDR"]))

    wrapped = RequestHooks(app, "wsgi", None, post, lambda: "worker")
    scope = {"type": "http", "method": "POST", "path": "/a b", "raw_path": b"/a%20b", "query_string": b"x=1",
             "http_version": "1.0", "headers": [(b"x-a", b"1"), (b"x-a", b"2")], "client": ("10.0.0.9", 5)}

    async def send(message: Any) -> None:
        pass

    with pytest.raises(RuntimeError):
        asyncio.run(wrapped(scope, None, send))
    assert seen == [("worker", "POST", "/a%20b?x=1", (1, 0), [("X-A", "1"), ("X-A", "2")],
                     "500 Internal Server Error", 500, "1,2", "10.0.0.9")]
    assert Request(scope).remote_addr == ("10.0.0.9", 5)
    assert hooks.wrap_app(app, "asgi3") is app  # no request hook: no wrapper, no cost


def test_readme_documents_the_source_flags_and_every_gunicorn_setting() -> None:
    from pathlib import Path

    from asgiserve.config_file import SOURCE_OPTIONS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    options = readme.split("### Options", 1)[1].split("###", 1)[0]
    for p in cli.cli.params:
        if p.name in SOURCE_OPTIONS:
            assert all(f"`{flag}`" in options for flag in p.opts), p.opts
    section = readme.split("## gunicorn.conf.py", 1)[1].split("\n## ", 1)[0]
    for name in [*GUNICORN, *NOT_APPLICABLE, *hooks.HOOKS, "logconfig_dict"]:
        assert f"`{name}`" in section or f"`{name}(" in section or (
            name.startswith(("http2_", "dirty_")) and f"`{name.split('_')[0]}_*`" in section), name


def test_gunicorn_http2_settings_map_onto_the_http2_options() -> None:
    sources = settings(http_protocols="h2,h1", http2_cleartext=True, http2_max_concurrent_streams=7,
                       http2_initial_window_size=100000, http2_max_frame_size=32768, http2_max_header_list_size=0)
    assert sources.defaults == {
        "http2": True, "http2_cleartext": "prior-knowledge", "http2_max_concurrent_streams": 7,
        "http2_initial_window_size": 100000, "http2_max_frame_size": 32768, "http2_max_header_list_size": 1 << 20,
    }
    assert sources.origins["http2"] == "file conf.py (http_protocols)" and not sources.notes
    config = Config(app="a:b", **sources.defaults)
    assert config.http2 and config.http2_max_concurrent_streams == 7
    assert settings(http_protocols="h2").defaults == {"http2": True}
    assert settings(http_protocols="h1", http2_cleartext="OFF").defaults == {"http2": False, "http2_cleartext": "OFF"}
    assert Config(app="a:b", http2_cleartext=" OFF").http2_cleartext == "off"
    for bad, message in (("h3", "invalid protocol 'h3'"), ("h2,h2", "lists a protocol twice"), (2, "must be a string")):
        with pytest.raises(ConfigError, match=message):
            settings(http_protocols=bad)
    with pytest.raises(ConfigError, match="--http2-cleartext must be one of"):
        Config(app="a:b", http2_cleartext="sometimes")
