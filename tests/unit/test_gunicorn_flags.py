"""gunicorn's flags as Config fields: spellings, -k mappings, statsd formats, the deploy examples.

In-process (CliRunner, the server replaced by a recorder); the processes themselves are tested in
tests/integration/test_gunicorn_flags.py.
"""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from asgiserve import cli as cli_module
from asgiserve import startup
from asgiserve.config import Config, env_names, option_fields
from asgiserve.errors import ConfigError
from asgiserve.statsd import Statsd, normalise_prefix, parse_address
from asgiserve.workerclass import describe

ROOT = Path(__file__).resolve().parents[2]


def _clean_env() -> dict[str, Any]:
    import os

    names = [n for f in option_fields() for n in env_names(f)] + ["ASGISERVE_APP"]
    return {n: None for n in names if n in os.environ}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    seen: list[Config] = []
    monkeypatch.setattr("asgiserve.server.run", lambda config, sockets=None: seen.append(config))
    monkeypatch.setattr("asgiserve.workers.supervisor.run", lambda config: seen.append(config))
    monkeypatch.setattr("asgiserve.logs.configure_logging", lambda config: None)
    monkeypatch.setattr(startup, "begin", lambda config: None)
    return seen


def invoke(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli_module.cli, list(args), env={**_clean_env(), **env})


def test_gunicorn_spellings_reach_the_same_fields(recorder: list[Config]) -> None:
    result = invoke(
        "-t", "12", "-p", "app.pid", "--keep-alive", "3", "--access-logformat", "%(h)s %(s)s",
        "--limit-request-field_size", "4096", "--log-file", "err.log", "--access-logfile", "-",
        "-n", "shop", "-e", "A=1", "--env", "B=two=2", "--worker-tmp-dir", "/dev/shm", "--capture-output",
        "--worker-connections", "500", "--statsd-host", "127.0.0.1:8125", "--statsd-prefix", "shop",
        "--dogstatsd-tags", "env:prod", "main:app",
    )
    assert result.exit_code == 0, result.output
    config = recorder[0]
    assert config.timeout == 12.0 and config.pid == "app.pid" and config.timeout_keep_alive == 3.0
    assert config.access_log_format == "%(h)s %(s)s" and config.limit_request_field_size == 4096
    assert config.error_logfile == "err.log" and config.access_logfile == "-"
    assert config.proc_name == "shop" and config.worker_tmp_dir == "/dev/shm" and config.capture_output
    assert config.env == ("A=1", "B=two=2") and config.env_vars == {"A": "1", "B": "two=2"}
    assert config.worker_connections == 500 and config.limit_connections == 500
    assert (config.statsd_host, config.statsd_prefix, config.dogstatsd_tags) == ("127.0.0.1:8125", "shop", "env:prod")


def test_env_from_the_environment_one_per_line(recorder: list[Config]) -> None:
    result = invoke("main:app", ASGISERVE_ENV="GREETING=hello world\nEMPTY=\n")
    assert result.exit_code == 0, result.output
    assert recorder[0].env_vars == {"GREETING": "hello world", "EMPTY": ""}


@pytest.mark.parametrize(
    "worker_class, threads_args, interface, threads, http, says",
    [
        ("sync", [], "wsgi", 1, "auto", "WSGI with 1 thread per worker, one request at a time"),
        ("sync", ["--threads", "8"], "wsgi", 8, "auto", "8 threads per worker (gunicorn switches to gthread"),
        ("gthread", [], "wsgi", 32, "auto", "WSGI with 32 threads per worker"),
        ("gthread", ["--threads", "4"], "wsgi", 4, "auto", "WSGI with 4 threads per worker"),
        ("gunicorn.workers.sync.SyncWorker", [], "wsgi", 1, "auto", "1 thread per worker"),
        ("egg:gunicorn#gthread", [], "wsgi", 32, "auto", "32 threads"),
        ("asgi", [], "auto", 32, "auto", "asgiserve's own event loop"),
        ("uvicorn.workers.UvicornWorker", [], "auto", 32, "auto", "uvicorn is not needed"),
        ("uvicorn_worker.UvicornWorker", [], "auto", 32, "auto", "uvicorn is not needed"),
        ("uvicorn.workers.UvicornH11Worker", [], "auto", 32, "h11", "h11 parser"),
        ("uvicorn_worker.UvicornH11Worker", [], "auto", 32, "h11", "h11 parser"),
    ],
)
def test_worker_class_maps_onto_interface_threads_and_parser(
    recorder: list[Config], worker_class: str, threads_args: list[str], interface: str, threads: int, http: str,
    says: str,
) -> None:
    result = invoke("-k", worker_class, *threads_args, "main:app")
    assert result.exit_code == 0, result.output
    config = recorder[0]
    assert (config.worker_class, config.interface, config.threads, config.http) == (worker_class, interface, threads,
                                                                                 http)
    line = describe(config.worker_class, config.threads, config.http)
    assert says in line and "\n" not in line and line == startup.notes(config)[0]
    assert config.replace(port=1) == config.replace(port=1).replace()  # applying it again changes nothing


@pytest.mark.parametrize(
    "worker_class, instead",
    [
        ("gevent", "-k gthread --threads"),
        ("gevent_pywsgi", "-k gthread --threads"),
        ("gunicorn.workers.ggevent.GeventWorker", "-k gthread --threads"),
        ("eventlet", "-k gthread --threads"),
        ("tornado", "-k gthread"),
        ("myproject.workers.CustomWorker", "sync, gthread, asgi, uvicorn.workers.UvicornWorker"),
    ],
)
def test_refused_worker_classes_exit_2_with_one_line_saying_what_to_use(
    recorder: list[Config], worker_class: str, instead: str
) -> None:
    result = invoke("-k", worker_class, "main:app")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: -k {worker_class}: ") and instead in lines[0], lines
    assert recorder == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-k", "sync", "--interface", "asgi3"], "-k sync serves WSGI apps, but --interface is asgi3"),
        (["-k", "uvicorn.workers.UvicornH11Worker", "--http", "httptools"], "means the h11 parser"),
        (["-e", "NOEQUALS"], "-e/--env 'NOEQUALS' is not KEY=VALUE"),
        (["-e", "=value"], "is not KEY=VALUE"),
        (["--worker-connections", "0"], "--worker-connections must be at least 1"),
        (["--statsd-host", "localhost:notaport"], "--statsd-host 'localhost:notaport' is not HOST:PORT"),
        (["--chdir", "/nonexistent/dir"], "--chdir /nonexistent/dir: No such file or directory"),
    ],
)
def test_bad_gunicorn_options_exit_2(recorder: list[Config], args: list[str], fragment: str) -> None:
    result = invoke(*args, "main:app")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"Error: {fragment}"] or fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert recorder == []


def test_daemon_is_refused_under_systemd_notify(recorder: list[Config]) -> None:
    result = invoke("-D", "main:app", NOTIFY_SOCKET="/nonexistent/asgiserve-test/notify")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: -D/--daemon under systemd (NOTIFY_SOCKET is set): systemd already runs the server in the background; "
        "drop -D and use Type=notify"
    ]
    assert recorder == []


def test_user_and_group_short_flags(recorder: list[Config]) -> None:
    import os

    result = invoke("-u", str(os.getuid()), "-g", str(os.getgid()), "main:app")
    assert result.exit_code == 0, result.output
    assert (recorder[0].user, recorder[0].group) == (str(os.getuid()), str(os.getgid()))


def test_chdir_and_env_are_applied_before_the_checks(recorder: list[Config], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path.cwd())  # undone after the test: --chdir changes this process's cwd
    monkeypatch.setenv("FROM_E", "old")  # -e overrides the inherited value, as gunicorn's raw_env does
    result = invoke("--chdir", str(tmp_path), "-e", "FROM_E=new", "main:app")
    assert result.exit_code == 0, result.output
    import os

    assert Path.cwd() == tmp_path and os.environ["FROM_E"] == "new"


def test_notes_for_mapped_options_and_those_without_effect() -> None:
    lines = startup.notes(Config(app="m:a", worker_connections=1000, worker_tmp_dir="/dev/shm", capture_output=True))
    assert len(lines) == 3
    assert lines[0] == ("--worker-connections 1000: each worker holds at most 1000 connections and stops accepting "
                        "until one closes (--limit-connections).")
    assert "--worker-tmp-dir has no effect" in lines[1]
    assert "--capture-output has no effect without --error-logfile" in lines[2]
    assert startup.notes(Config(app="m:a")) == []
    explicit = Config(app="m:a", worker_connections=1000, limit_connections=50)
    assert explicit.limit_connections == 50
    assert startup.notes(explicit) == ["--worker-connections 1000 has no effect: --limit-connections 50 is set."]


# -- statsd -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("localhost:9125", (socket.AF_INET, ("localhost", 9125))),
        ("statsd", (socket.AF_INET, ("statsd", 8125))),
        ("[::1]:9000", (socket.AF_INET6, ("::1", 9000))),
        ("unix:/run/statsd.sock", (socket.AF_UNIX, "/run/statsd.sock")),
        ("unix:///run/statsd.sock", (socket.AF_UNIX, "/run/statsd.sock")),
    ],
)
def test_statsd_addresses(text: str, expected: tuple[int, Any]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host:0", "host:99999", "[::1", "unix:", ":8125"])
def test_bad_statsd_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match="--statsd-host"):
        parse_address(text)


def test_statsd_prefix_gets_one_dot_as_in_gunicorn() -> None:
    assert [normalise_prefix(p) for p in ("", "app", "app.", "app...", "a.b")] == ["", "app.", "app.", "app.", "a.b."]


def test_statsd_datagrams_use_gunicorn_names_and_formats() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        client = Statsd(f"127.0.0.1:{receiver.getsockname()[1]}", "shop", "env:prod")
        client.request(200, 0.0123456)
        client.request(404, 0.5)
        client.workers(2)
        client.workers(2)  # unchanged: not sent again
        client.increment("gunicorn.log.error")
        got = [receiver.recv(1000).decode() for _ in range(8)]
        client.close()
    assert got == [
        "shop.gunicorn.request.duration:12.346|ms|#env:prod",
        "shop.gunicorn.requests:1|c|@1.0|#env:prod",
        "shop.gunicorn.request.status.200:1|c|@1.0|#env:prod",
        "shop.gunicorn.request.duration:500.0|ms|#env:prod",
        "shop.gunicorn.requests:1|c|@1.0|#env:prod",
        "shop.gunicorn.request.status.404:1|c|@1.0|#env:prod",
        "shop.gunicorn.workers:2|g|#env:prod",
        "shop.gunicorn.log.error:1|c|@1.0|#env:prod",
    ]


def test_statsd_never_blocks_or_raises_when_nobody_listens() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Statsd(f"127.0.0.1:{port}")  # closed port: ICMP refusals make later sends fail
    for _ in range(200):
        client.request(200, 0.001)
    assert client.sent + client.dropped == 600
    assert client.sock is not None and client.sock.getblocking() is False
    client.close()


# -- examples/deploy: the numbers that must agree -----------------------------------------
def _dockerfile_cmd() -> list[str]:
    text = (ROOT / "examples" / "deploy" / "Dockerfile").read_text()
    cmd = re.findall(r"^CMD (\[.*?\])\s*$", text.replace("\\\n", ""), re.M | re.S)
    assert len(cmd) == 1, "one CMD, in exec (JSON) form"
    return list(json.loads(cmd[0]))


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_dockerfile_runs_asgiserve_as_pid_1_unprivileged_with_web_concurrency(recorder: list[Config]) -> None:
    text = (ROOT / "examples" / "deploy" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^ENV WEB_CONCURRENCY=\d+", text, re.M)
    cmd = _dockerfile_cmd()
    assert cmd[0] == "asgiserve" and "-D" not in cmd and "--daemon" not in cmd and "--workers" not in cmd
    result = invoke(*cmd[1:], WEB_CONCURRENCY="3")
    assert result.exit_code == 0, result.output
    assert recorder[0].workers == 3 and recorder[0].bind == ("0.0.0.0:8000",)


def test_kubernetes_grace_period_covers_prestop_drain_and_lifespan_shutdown() -> None:
    text = (ROOT / "examples" / "deploy" / "kubernetes.yaml").read_text()
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))  # type: ignore[union-attr]
    pre_stop = int(re.search(r'command: \["sleep", "(\d+)"\]', text).group(1))  # type: ignore[union-attr]
    args_text = re.search(r"args: (\[.*?\])\n", text, re.S).group(1)  # type: ignore[union-attr]
    args = json.loads(args_text)
    assert args == _dockerfile_cmd(), "the Deployment's args and the image's CMD must agree"
    drain = float(_flag(args, "--timeout-graceful-shutdown")) + float(_flag(args, "--lifespan-shutdown-timeout"))
    assert grace >= pre_stop + drain + 5, (grace, pre_stop, drain)
    assert "maxUnavailable: 0" in text and "readinessProbe:" in text and "livenessProbe:" in text
    assert "kind: Service" in text and "type: RollingUpdate" in text


def test_gunicorn_http2_flags(recorder: list[Config]) -> None:
    result = invoke("--http-protocols", "h2,h1", "--http2-cleartext", "both", "--http2-max-concurrent-streams", "7",
                    "--http2-initial-window-size", "100000", "--http2-max-frame-size", "32768",
                    "--http2-max-header-list-size", "8192", "main:app")
    assert result.exit_code == 0, result.output
    config = recorder[-1]
    assert config.http2 and config.http2_cleartext == "both" and config.http2_max_concurrent_streams == 7
    assert (config.http2_initial_window_size, config.http2_max_frame_size, config.http2_max_header_list_size) == (
        100000, 32768, 8192)
    notes = startup.notes(config)
    assert notes[0] == "--http-protocols h2,h1: HTTP/2 on (--http2), preferred in ALPN."
    assert "Upgrade: h2c is not supported" in notes[1] and "prior-knowledge h2c is served" in notes[1]
    assert invoke("--http-protocols", "h1", "--http2", "main:app").exit_code == 0
    assert recorder[-1].http2 is False  # given, it decides
    result = invoke("--http-protocols", "h2,h3", "main:app")
    assert result.exit_code == 2 and "--http-protocols: invalid protocol 'h3'" in result.output
