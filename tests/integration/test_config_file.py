"""gunicorn.conf.py in real processes: settings, precedence, GUNICORN_CMD_ARGS, --check-config,
--print-config, and every server hook firing with gunicorn's arguments.

The hooks write one line per call to a file (O_APPEND: lines from several processes stay
whole) and echo it to stderr, so the tests wait on stderr lines, never on a sleep, and then
check the file. Teardown kills only our child's process group.
"""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.supervised import Supervised, clean_env, get, write_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork-based supervisor")

NOTE = '''
import os

HOOK_LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.log")


def _note(*parts):
    line = " ".join(str(p) for p in parts) + "\\n"
    fd = os.open(HOOK_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    os.write(2, ("HOOK " + line).encode())
'''

# What people deploy with gunicorn (the settings most set in public gunicorn.conf.py files).
REALISTIC = NOTE + '''
import multiprocessing

bind = "unix:app.sock"
umask = 0o007
workers = 2
worker_class = "uvicorn.workers.UvicornWorker"
accesslog = "-"
errorlog = "-"
loglevel = "info"
timeout = 30
keepalive = 5
graceful_timeout = 5
max_requests = 1000
max_requests_jitter = 50
preload_app = True
proc_name = "shop"
wsgi_app = "shop:app"
cores = multiprocessing.cpu_count()  # a helper variable: not a setting


def on_starting(server):
    _note("on_starting", server.pid, server.cfg.workers, server.cfg.keepalive, server.cfg.preload_app,
          server.cfg.timeout_keep_alive)


def when_ready(server):
    server.log.info("Server is ready. Spawning workers")
    _note("when_ready", server.pid, server.address)


def nworkers_changed(server, new_value, old_value):
    _note("nworkers_changed", new_value, old_value)


def pre_fork(server, worker):
    _note("pre_fork", worker.pid, worker.age)


def post_fork(server, worker):
    server.log.info("Worker spawned (pid: %s)", worker.pid)
    _note("post_fork", worker.pid, os.getpid(), worker.age, worker.ppid == server.pid == os.getppid())


def post_worker_init(worker):
    _note("post_worker_init", worker.pid, worker.alive, worker.wsgi is not None)


def on_reload(server):
    _note("on_reload", server.pid)


def worker_int(worker):
    worker.log.info("worker received INT or QUIT signal")
    _note("worker_int", worker.pid, worker.alive)


def child_exit(server, worker):
    _note("child_exit", worker.pid, worker.alive)


def worker_exit(server, worker):
    _note("worker_exit", worker.pid, os.getpid())


def on_exit(server):
    _note("on_exit", server.pid, server.address)


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
    _note("pre_request", worker.pid, req.method, req.path, req.query)


def post_request(worker, req, environ, resp):
    _note("post_request", worker.pid, req.path, resp.status, environ["PATH_INFO"])
'''


@pytest.fixture
def procs() -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for proc in started:
        proc.kill()


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asgiserve", *args], cwd=cwd, env=clean_env(env),
                          capture_output=True, text=True, timeout=30)


def hook_lines(directory: Path) -> list[str]:
    return (directory / "hooks.log").read_text().splitlines()


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """--print-config's lines as {name: (value, source)}."""
    rows = {}
    for line in result.stdout.splitlines():
        name, _, rest = line.partition(" = ")
        value, _, source = rest.partition("  # ")
        rows[name.strip()] = (value.strip(), source.strip())
    return rows


def test_an_existing_gunicorn_conf_py_just_works_and_every_hook_fires(tmp_path: Path, procs: list[Supervised]) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(REALISTIC)
    write_app(tmp_path, "shop")
    proc = Supervised([], cwd=tmp_path)  # no arguments at all: ./gunicorn.conf.py, as with gunicorn
    procs.append(proc)
    pids = proc.ready()
    proc.wait_for(r"\[INFO\] Configuration file: \./gunicorn\.conf\.py \(found in the current directory")
    assert proc.count(r"\[WARNING\] gunicorn\.conf\.py: not settings asgiserve knows, ignored: HOOK_LOG, cores\.$") == 1
    sock = str(tmp_path / "app.sock")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o770  # umask 0o007
    status, _, body = get(sock, "/items?x=1")
    assert status == 200 and body.decode().startswith("v1 ")
    served_by = int(body.decode().split()[1])
    proc.wait_for(rf"^HOOK post_request {served_by} /items 200 /items$")

    mark = proc.mark()
    os.kill(pids[0], signal.SIGKILL)  # child_exit is how prometheus_client's recipe learns of it
    proc.wait_for(rf"^HOOK child_exit {pids[0]} False$", mark)
    proc.wait_for(r"Worker \d+ is serving", mark)
    mark = proc.mark()
    proc.signal(signal.SIGTTIN)
    proc.wait_for(r"^HOOK nworkers_changed 3 2$", mark)
    proc.wait_for(r"Worker \d+ is serving", mark)
    mark = proc.mark()
    proc.signal(signal.SIGHUP)
    proc.wait_for(rf"^HOOK on_reload {proc.pid}$", mark)
    pids = proc.ready(mark, what="Reload complete")
    proc.wait_for(r"^HOOK child_exit ", mark, count=3)  # the previous generation, drained
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the group gets it
    assert proc.finish() == 0

    lines = hook_lines(tmp_path)
    assert lines[0] == "nworkers_changed 2 None"
    assert lines[1] == f"on_starting {proc.pid} 2 5.0 True 5.0"
    assert lines[2] == f"when_ready {proc.pid} ['app.sock']"
    assert lines[3:5] == ["pre_fork [booting] 1", "pre_fork [booting] 2"] or lines[3] == "pre_fork [booting] 1"
    forked = [line.split() for line in lines if line.startswith("post_fork ")]
    assert len(forked) == 2 + 1 + 1 + 3  # the first two, the respawn, TTIN, the reload's three
    for _, pid, getpid, age, ppid_ok in forked:
        assert pid == getpid and ppid_ok == "True"
    assert sorted(int(f[3]) for f in forked) == list(range(1, 8))  # worker.age counts every spawn
    inits = [line for line in lines if line.startswith("post_worker_init ")]
    assert len(inits) == 7 and all(line.endswith(" True True") for line in inits)
    assert f"pre_request {served_by} GET /items x=1" in lines
    assert lines[-1] == f"on_exit {proc.pid} ['app.sock']"  # the sockets are closed by then: as configured
    for pid in pids:  # the workers serving at Ctrl-C: worker_int, then worker_exit, then child_exit
        mine = [line for line in lines if line.split()[1:2] == [str(pid)]]
        assert [line.split()[0] for line in mine][-3:] == ["worker_int", "worker_exit", "child_exit"], mine
        assert f"worker_int {pid} False" in mine and f"worker_exit {pid} {pid}" in mine
    exits = [line for line in lines if line.startswith("child_exit ")]
    assert len(exits) == 7  # every worker that ever ran
    assert proc.count(r"\[INFO\] Worker spawned \(pid: \d+\)") == 7  # server.log from a hook


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_pre_request_and_post_request(tmp_path: Path, procs: list[Supervised], interface: str) -> None:
    (tmp_path / "hooks.py").write_text(NOTE + '''
bind = "127.0.0.1:0"


def pre_request(worker, req):
    _note("pre", worker.pid, req.method, req.path, req.query, req.uri, req.version,
          dict(req.headers)["X-TEST"], worker.alive)


def post_request(worker, req, environ, resp):
    _note("post", worker.pid, req.path, repr(resp.status), resp.status_code, resp.sent,
          resp.response_length, {k.lower(): v for k, v in resp.headers}["content-type"], environ["PATH_INFO"],
          environ["QUERY_STRING"], environ["HTTP_X_TEST"], environ["REQUEST_METHOD"])
''')
    (tmp_path / "apps.py").write_text('''
def wsgi(environ, start_response):
    start_response("201 Created", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hel", "more_body": True})
    await send({"type": "http.response.body", "body": b"lo"})
''')
    proc = Supervised(["-c", "hooks.py", f"apps:{interface}", "--no-access-log"], cwd=tmp_path)
    procs.append(proc)
    port = proc.port()
    (worker,) = proc.ready()
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /p/q?a=1&b=2 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 201 ") and response.endswith(b"hello")
    proc.wait_for(r"^HOOK post ")
    status = "'201 Created'" if interface == "wsgi" else "201"  # as gunicorn's WSGI / ASGI workers give it
    assert hook_lines(tmp_path) == [
        f"pre {worker} GET /p/q a=1&b=2 /p/q?a=1&b=2 (1, 1) yes True",
        f"post {worker} /p/q {status} 201 5 5 text/plain /p/q a=1&b=2 yes GET",
    ]
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_a_hook_that_raises_is_logged_and_in_a_startup_hook_stops_the_start(tmp_path: Path,
                                                                            procs: list[Supervised]) -> None:
    write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text('''
bind = "127.0.0.1:0"
def post_fork(server, worker):
    raise ValueError("no tracing backend")
''')
    proc = Supervised(["workapp:app"], cwd=tmp_path)
    procs.append(proc)
    port = proc.port()
    proc.ready()
    proc.wait_for(r"\[ERROR\] The post_fork hook raised ValueError: no tracing backend$")
    proc.wait_for(r"^ValueError: no tracing backend$")  # the traceback follows
    assert get(port)[0] == 200  # and the worker serves
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0

    for hook in ("on_starting", "when_ready"):
        (tmp_path / "gunicorn.conf.py").write_text(f'''
bind = "unix:app.sock"
def {hook}(server):
    raise RuntimeError("database unreachable")
''')
        result = run(["workapp:app"], tmp_path)
        assert result.returncode == 3
        assert result.stderr.rstrip().splitlines()[-1] == (
            f"Error: the {hook} hook raised RuntimeError: database unreachable")
        assert "Traceback (most recent call last)" in result.stderr
        assert not (tmp_path / "app.sock").exists() and "IMPORTED" not in result.stderr


def test_worker_abort_on_timeout(tmp_path: Path, procs: list[Supervised]) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(NOTE + '''
bind = "127.0.0.1:0"
timeout = 1
def worker_abort(worker):
    _note("worker_abort", worker.pid, worker.alive)
''')
    proc = Supervised([write_app(tmp_path)], cwd=tmp_path)
    procs.append(proc)
    port = proc.port()
    (worker,) = proc.ready()
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")  # time.sleep(60) on the event loop
        mark = proc.mark()
        proc.wait_for(rf"^HOOK worker_abort {worker} False$")
    proc.wait_for(r"Worker \d+ is serving", mark)  # its replacement
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


# -- GUNICORN_CMD_ARGS and precedence ---------------------------------------------------------------
def test_gunicorn_cmd_args(tmp_path: Path, procs: list[Supervised]) -> None:
    env = {"GUNICORN_CMD_ARGS": "--bind=127.0.0.1:0 --workers 2 --keep-alive 9 -n 'my shop'"}
    proc = Supervised([write_app(tmp_path), "--no-access-log"], cwd=tmp_path, env=env)
    procs.append(proc)
    port = proc.port()
    assert len(proc.ready()) == 2 and get(port)[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0
    rows = printed(run(["--print-config", "-w", "3"], tmp_path, env))
    assert rows["bind"] == ("('127.0.0.1:0',)", "environment GUNICORN_CMD_ARGS")
    assert rows["timeout_keep_alive"] == ("9.0", "environment GUNICORN_CMD_ARGS")
    assert rows["proc_name"] == ("'my shop'", "environment GUNICORN_CMD_ARGS")
    assert rows["workers"] == ("3", "command line")
    (tmp_path / "other.py").write_text("workers = 4\n")
    rows = printed(run(["--print-config"], tmp_path, {"GUNICORN_CMD_ARGS": "-c other.py"}))
    assert rows["workers"] == ("4", "file other.py")  # its -c names the file, as in gunicorn
    rows = printed(run(["--print-config"], tmp_path, {"ASGISERVE_CONFIG": "other.py"}))
    assert rows["workers"] == ("4", "file other.py")
    bad = run(["--print-config"], tmp_path, {"GUNICORN_CMD_ARGS": "--workers 'two"})
    assert bad.returncode == 2 and bad.stderr.strip() == "Error: GUNICORN_CMD_ARGS: No closing quotation"


def test_config_file_beats_defaults(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\nkeepalive = 4\n")
    rows = printed(run(["--print-config"], tmp_path))
    assert rows["workers"] == ("3", "file gunicorn.conf.py")
    assert rows["timeout_keep_alive"] == ("4.0", "file gunicorn.conf.py (keepalive)")
    assert rows["backlog"] == ("2048", "default")


def test_environment_beats_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text("workers = 3\nbind = ['127.0.0.1:9001', 'unix:x.sock']\nthreads = 8\n")
    env = {"ASGISERVE_WORKERS": "5", "GUNICORN_CMD_ARGS": "--threads 16 --workers 6", "WEB_CONCURRENCY": "9"}
    rows = printed(run(["--print-config", "-c", "conf.py"], tmp_path, env))
    assert rows["workers"] == ("5", "environment ASGISERVE_WORKERS")  # above GUNICORN_CMD_ARGS
    assert rows["threads"] == ("16", "environment GUNICORN_CMD_ARGS")
    assert rows["bind"] == ("('127.0.0.1:9001', 'unix:x.sock')", "file conf.py")
    # WEB_CONCURRENCY is a platform default: in gunicorn a config file's workers beats it.
    rows = printed(run(["--print-config", "-c", "conf.py"], tmp_path, {"WEB_CONCURRENCY": "9"}))
    assert rows["workers"] == ("3", "file conf.py, over WEB_CONCURRENCY")
    rows = printed(run(["--print-config"], tmp_path, {"WEB_CONCURRENCY": "9"}))
    assert rows["workers"] == ("9", "environment WEB_CONCURRENCY")


def test_command_line_beats_environment(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\nloglevel = 'debug'\n")
    env = {"ASGISERVE_WORKERS": "5", "ASGISERVE_LOG_LEVEL": "error", "GUNICORN_CMD_ARGS": "-w 6"}
    rows = printed(run(["--print-config", "--workers", "7", "app:app"], tmp_path, env))
    assert rows["workers"] == ("7", "command line")
    assert rows["log_level"] == ("'error'", "environment ASGISERVE_LOG_LEVEL")
    assert rows["app"] == ("'app:app'", "command line")


def test_print_config_shows_every_option_and_its_source(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text(textwrap.dedent('''
        import os
        preload_app = True
        pidfile = "/run/shop.pid"
        umask = "027"
        cert_reqs = 0
        forwarded_allow_ips = ["10.0.0.1", "10.0.0.2"]
        limit_request_line = 0
        raw_env = ["A=1", "B=2"]
        wsgi_app = "shop.wsgi:application"
        def post_fork(server, worker):
            pass
    '''))
    result = run(["--print-config", "-c", "python:settings", "--timeout", "12"], tmp_path,
                 {"ASGISERVE_BACKLOG": "64"})
    assert result.returncode == 0, result.stderr
    rows = printed(result)
    from asgiserve.config import option_fields

    assert set(rows) == {"app", "hook post_fork"} | {f.name for f in option_fields()}
    assert rows["app"] == ("'shop.wsgi:application'", "file python:settings (wsgi_app)")
    assert rows["preload"] == ("True", "file python:settings (preload_app)")
    assert rows["pid"] == ("'/run/shop.pid'", "file python:settings (pidfile)")
    assert rows["umask"] == ("0o027", "file python:settings")
    assert rows["ssl_cert_reqs"] == ("'0'", "file python:settings (cert_reqs)")
    assert rows["forwarded_allow_ips"] == ("'10.0.0.1,10.0.0.2'", "file python:settings")
    assert rows["limit_request_line"] == ("8190", "file python:settings")  # gunicorn's 0: its maximum
    assert rows["env"] == ("('A=1', 'B=2')", "file python:settings (raw_env)")
    assert rows["supervise"] == ("True", "file python:settings (server hooks run in the supervisor)")
    assert rows["timeout"] == ("12.0", "command line")
    assert rows["backlog"] == ("64", "environment ASGISERVE_BACKLOG")
    assert rows["workers"] == ("1", "default")
    assert rows["hook post_fork"] == ("settings.post_fork", "file python:settings")


# -- warnings, --check-config ------------------------------------------------------------------------
def test_unknown_and_not_applicable_names_are_warned_once(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent('''
        import multiprocessing
        workerz = 4
        keepalive = 3
        max_worker_str = "4"
        sendfile = True
        proxy_protocol = True
        daemon = False
        def post_forks(server, worker):
            pass
        def numcpus():
            return multiprocessing.cpu_count()
    '''))
    result = run(["--check-config", "workapp:app"], tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line.split("] ", 3)[-1] for line in result.stderr.splitlines() if "[WARNING]" in line]
    assert warnings == [
        "gunicorn.conf.py: sendfile is not applicable: files from wsgi.file_wrapper are always sent with "
        "sendfile() where the transport allows it; ignored.",
        "gunicorn.conf.py: proxy_protocol is not applicable: the PROXY protocol is not supported: use "
        "X-Forwarded-For/Forwarded with forwarded_allow_ips; ignored.",
        "gunicorn.conf.py: workerz is not a setting asgiserve knows (did you mean workers?); ignored.",
        "gunicorn.conf.py: post_forks is not a setting asgiserve knows (did you mean post_fork?); ignored.",
        "gunicorn.conf.py: not settings asgiserve knows, ignored: max_worker_str.",
    ]


def test_check_config(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text("bind = 'unix:app.sock'\nworkers = 2\n")
    ok = run(["--check-config", "workapp:app"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == 'Configuration OK: ASGI 3 app "workapp:app", 2 worker(s), listening on unix:app.sock.'
    assert not (tmp_path / "app.sock").exists()  # nothing bound

    bad_app = run(["--check-config", "nosuchmodule:app"], tmp_path)
    assert bad_app.returncode == 1
    assert bad_app.stderr.strip().splitlines()[-1] == 'Error: could not import module "nosuchmodule"'

    (tmp_path / "gunicorn.conf.py").write_text("workers = 'many'\n")
    bad_value = run(["--check-config", "workapp:app"], tmp_path)
    assert bad_value.returncode == 1
    assert bad_value.stderr.strip() == "Error: gunicorn.conf.py: workers = 'many': 'many' is not a valid integer."
    serving = run(["workapp:app"], tmp_path)  # the same file without --check-config: a usage error
    assert serving.returncode == 2 and serving.stderr.strip() == bad_value.stderr.strip()

    (tmp_path / "gunicorn.conf.py").write_text("workers = 2\nbind = unix_socket\n")
    broken = run(["--check-config", "workapp:app"], tmp_path)
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines()[-1] == (
        "Error: config file gunicorn.conf.py line 2: NameError: name 'unix_socket' is not defined")
    assert run(["--version"], tmp_path).returncode == 0  # answered before the file is read
    assert run(["--check-config", "--workers", "x", "workapp:app"], tmp_path).returncode == 1

    # chdir and raw_env apply before the app is imported, as when serving.
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "envapp.py").write_text("import os\nGREETING = os.environ['GREETING']\napp = None\n")
    (tmp_path / "gunicorn.conf.py").write_text("chdir = 'srv'\nraw_env = ['GREETING=hi']\n")
    not_callable = run(["--check-config", "envapp:app"], tmp_path)
    assert not_callable.returncode == 1
    assert not_callable.stderr.strip().splitlines()[-1] == 'Error: "envapp:app" is not callable (it is NoneType)'
    assert run(["-c", "missing.py", "workapp:app"], tmp_path).stderr.strip() == "Error: -c missing.py: no such file"


def test_logconfig_dict_written_for_gunicorn(tmp_path: Path, procs: list[Supervised]) -> None:
    write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent('''
        bind = "127.0.0.1:0"
        workers = 2
        logconfig_dict = {
            "formatters": {"json": {"format": '{"level": "%(levelname)s", "msg": "%(message)s"}'}},
            "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
            "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["err"], "propagate": False,
                                           "qualname": "gunicorn.error"}},
        }
    '''))
    proc = Supervised(["workapp:app"], cwd=tmp_path)
    procs.append(proc)
    proc.wait_for(r'^\{"level": "INFO", "msg": "Ready: 2 worker\(s\) serving \(pids \d+, \d+\)\."\}$')
    assert proc.count(r"\[INFO\]") == 0  # every asgiserve.error line went through the dict's formatter
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0
    (tmp_path / "log.json").write_text('{"version": 1}')
    rows = printed(run(["--print-config", "--log-config", "log.json"], tmp_path))
    assert rows["log_config"] == ("'log.json'", "command line")
    assert rows["logconfig_dict"] == ("3 key(s) (not used: log_config is set)", "file gunicorn.conf.py")


# -- gunicorn 27's HTTP/2 settings ------------------------------------------------------------------
@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_gunicorn_http2_settings_in_a_config_file(tmp_path: Path, procs: list[Supervised], parser: str) -> None:
    import h2.events
    import h2.settings

    from tests.h2client import H2Client

    app = write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent(f'''
        bind = "127.0.0.1:0"
        wsgi_app = "{app}"
        http = "{parser}"
        http_protocols = "h2,h1"
        http2_max_concurrent_streams = 7
        http2_initial_window_size = 100000
        http2_max_frame_size = 32768
        http2_max_header_list_size = 8192
    '''))
    proc = Supervised([], cwd=tmp_path)
    procs.append(proc)
    port = proc.port()
    with H2Client("127.0.0.1", port) as client:
        assert client.until(lambda c: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        changed = next(e for e in client.events if isinstance(e, h2.events.RemoteSettingsChanged)).changed_settings
        codes = h2.settings.SettingCodes
        assert {code: changed[code].new_value for code in (
            codes.MAX_CONCURRENT_STREAMS, codes.INITIAL_WINDOW_SIZE, codes.MAX_FRAME_SIZE, codes.MAX_HEADER_LIST_SIZE,
        )} == {codes.MAX_CONCURRENT_STREAMS: 7, codes.INITIAL_WINDOW_SIZE: 100000, codes.MAX_FRAME_SIZE: 32768,
               codes.MAX_HEADER_LIST_SIZE: 8192}
        status, _, body = client.response(client.request("/"))
        assert status == 200 and body.startswith(b"v1 ")
    assert get(port)[0] == 200  # HTTP/1.1 on the same port
    assert "not applicable" not in proc.text and "not supported" not in proc.text
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0
    rows = printed(run(["--print-config"], tmp_path))
    assert rows["http2"] == ("True", "file gunicorn.conf.py (http_protocols)")
    assert rows["http2_max_concurrent_streams"] == ("7", "file gunicorn.conf.py")
    # http2_cleartext = "off" (gunicorn's default): HTTP/2 over TLS only, the preface is not taken on cleartext.
    with (tmp_path / "gunicorn.conf.py").open("a") as fh:
        fh.write('http2_cleartext = "off"\n')
    proc = Supervised([], cwd=tmp_path)
    procs.append(proc)
    port = proc.port()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    assert get(port)[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0
