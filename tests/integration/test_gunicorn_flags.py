"""gunicorn's flags on real processes: -k, log files and their reopening on USR1, --capture-output,
-e, --chdir, -n, statsd datagrams on a UDP socket, -D.

With --error-logfile the server's lines go to the file, not stderr, so readiness is read from the
file (polled between reads; the line is the signal, never a sleep). Each process runs in its own
session and teardown kills only its group (or, for -D, the daemon's PID from its pid file).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.integration.supervised import DEADLINE, Supervised, clean_env, get

ASGI_APP = '''
import os, sys

print(f"IMPORTED cwd={os.getcwd()} GREETING={os.environ.get('GREETING')}", flush=True)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    print(f"PRINTED {scope['path']}")  # the app's own stdout: --capture-output sends it to the error log
    print(f"STDERR {scope['path']}", file=sys.stderr)
    body = f"{os.getpid()} {os.environ.get('GREETING')} {os.getcwd()}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''

WSGI_APP = '''
import threading, time


def app(environ, start_response):
    time.sleep(0.2)
    body = f"{environ['wsgi.multithread']} {threading.current_thread().name}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_in_file(path: Path, pattern: str, count: int = 1, timeout: float = DEADLINE) -> list[str]:
    """Lines of ``path`` matching ``pattern``, once there are ``count`` of them (bounded)."""
    regex = re.compile(pattern)
    end = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        found = [line for line in text.splitlines() if regex.search(line)]
        if len(found) >= count:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"{count} x {pattern!r} not in {path}:\n{text}")
        time.sleep(0.02)  # between reads of the file only


@pytest.fixture
def procs() -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for p in started:
        p.kill()


def start(procs: list[Supervised], args: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> Supervised:
    proc = Supervised(args, cwd=cwd, env=env)
    procs.append(proc)
    return proc


# -- -k ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, line, served",
    [
        (["-k", "sync"], r"-k sync: serving the app as WSGI with 1 thread per worker", r"Serving WSGI app \(1 threads\)"),
        (["-k", "gthread", "--threads", "4"], r"-k gthread: serving the app as WSGI with 4 threads per worker",
         r"Serving WSGI app \(4 threads\)"),
    ],
)
def test_worker_class_sync_and_gthread(procs: list[Supervised], tmp_path: Path, args: list[str], line: str,
                                      served: str) -> None:
    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    port = free_port()
    proc = start(procs, [*args, "-w", "2", "-b", f"127.0.0.1:{port}", "wsgiapp:app"], tmp_path)
    proc.ready()
    assert proc.count(line) == 1, proc.text
    proc.wait_for(served, count=2)
    status, _, body = get(port, "/")
    assert status == 200 and body.startswith(b"True ")


def test_worker_class_sync_serves_one_request_at_a_time(procs: list[Supervised], tmp_path: Path) -> None:
    """The effect, not just the line: two concurrent 0.2 s requests on one -k sync worker take
    twice as long as on -k gthread."""
    import concurrent.futures

    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    timings = {}
    for kind in ("sync", "gthread"):
        port = free_port()
        proc = start(procs, ["-k", kind, "-b", f"127.0.0.1:{port}", "--no-access-log", "wsgiapp:app"], tmp_path)
        proc.wait_for(rf"Listening on http://127\.0\.0\.1:{port}")
        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: get(port, "/")[0], range(4)))
        timings[kind] = time.monotonic() - began
        assert results == [200] * 4
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0
    assert timings["sync"] >= 0.75 > timings["gthread"], timings  # 4 x 0.2 s in a row, or side by side


def test_worker_class_uvicorn_h11(procs: list[Supervised], tmp_path: Path) -> None:
    (tmp_path / "asgiapp.py").write_text(ASGI_APP)
    port = free_port()
    proc = start(procs, ["-k", "uvicorn.workers.UvicornH11Worker", "-b", f"127.0.0.1:{port}", "asgiapp:app"], tmp_path)
    proc.wait_for(r"-k uvicorn\.workers\.UvicornH11Worker: serving the app on asgiserve's own event loop")
    proc.wait_for(r"Using h11 parser")
    assert get(port, "/")[0] == 200


def test_worker_class_gevent_is_refused_with_what_to_use(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "asgiserve", "-k", "gevent", "main:app"], cwd=tmp_path,
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "Error: -k gevent: asgiserve does not monkey-patch with gevent; serve the WSGI app with threads instead "
        "(-k gthread --threads 64: blocking calls each hold a thread, not the loop), or make the slow paths async "
        "(ASGI)"
    ]


# -- log files, USR1, --capture-output, -e, --chdir ----------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_log_files_are_written_and_reopened_after_usr1(procs: list[Supervised], tmp_path: Path, workers: int) -> None:
    """logrotate's way: rename the files, send USR1 (postrotate), new lines go to new files. The
    app's print() lands in the error log with --capture-output; -e and --chdir reach the app."""
    app_dir = tmp_path / "site"
    app_dir.mkdir()
    (app_dir / "asgiapp.py").write_text(ASGI_APP)
    port = free_port()
    args = ["--chdir", str(app_dir), "-e", "GREETING=hello there", "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "--access-logfile", "access.log", "--error-logfile", "error.log", "--capture-output", "asgiapp:app"]
    proc = start(procs, args, tmp_path)
    access, error = app_dir / "access.log", app_dir / "error.log"  # relative to --chdir
    serving = r"Ready: 2 worker\(s\) serving" if workers == 2 else rf"Listening on http://127\.0\.0\.1:{port}"
    wait_in_file(error, serving)
    status, _, body = get(port, "/first")
    assert status == 200
    assert body.decode().split(" ", 1)[1] == f"hello there {app_dir}"  # -e and --chdir, seen by the app
    wait_in_file(access, r'"GET /first HTTP/1.1" 200')
    wait_in_file(error, r"PRINTED /first")  # print() from the app
    wait_in_file(error, r"STDERR /first")
    assert wait_in_file(error, r"IMPORTED ", count=workers)[0] == f"IMPORTED cwd={app_dir} GREETING=hello there"
    assert proc.text == ""  # nothing left on the real stderr: it all went to the file

    access.rename(app_dir / "access.log.1")
    error.rename(app_dir / "error.log.1")
    proc.signal(signal.SIGUSR1)
    end = time.monotonic() + DEADLINE
    while not (access.exists() and error.exists()):  # every process reopens by name
        assert time.monotonic() < end, "USR1 did not reopen the log files"
        time.sleep(0.02)
    for path in range(2 * workers):  # enough requests to reach every worker
        assert get(port, f"/second{path}")[0] == 200
    wait_in_file(access, r'"GET /second\d HTTP/1.1" 200', count=2 * workers)
    wait_in_file(error, r"PRINTED /second\d", count=2 * workers)
    old_access = (app_dir / "access.log.1").read_text()
    assert "/first" in old_access and "/second" not in old_access
    assert "/second" not in (app_dir / "error.log.1").read_text()
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0
    assert re.search(r"(Finished server process|Supervisor \d+ stopped)", error.read_text())


# -- -n ---------------------------------------------------------------------------------
def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc (Linux)")
def test_process_titles_carry_the_name(procs: list[Supervised], tmp_path: Path) -> None:
    pytest.importorskip("setproctitle", reason="process titles need setproctitle (asgiserve[proctitle])")
    (tmp_path / "asgiapp.py").write_text(ASGI_APP)
    supervised = start(procs, ["-n", "shop-api", "-w", "2", "-b", f"127.0.0.1:{free_port()}", "asgiapp:app"], tmp_path)
    workers = supervised.ready()
    assert _cmdline(supervised.pid) == "asgiserve: master [shop-api]"
    assert [_cmdline(pid) for pid in workers] == ["asgiserve: worker [shop-api]"] * 2
    single = start(procs, ["--name", "shop-one", "-b", f"127.0.0.1:{free_port()}", "asgiapp:app"], tmp_path)
    single.wait_for(r"Listening on")
    assert _cmdline(single.pid) == "asgiserve: server [shop-one]"


# -- statsd -----------------------------------------------------------------------------
def test_statsd_datagrams_from_workers_and_supervisor(procs: list[Supervised], tmp_path: Path) -> None:
    (tmp_path / "asgiapp.py").write_text(ASGI_APP)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(DEADLINE)
        port = free_port()
        proc = start(procs, ["-w", "2", "-b", f"127.0.0.1:{port}", "--no-access-log", "--statsd-host",
                             f"127.0.0.1:{receiver.getsockname()[1]}", "--statsd-prefix", "shop", "asgiapp:app"],
                     tmp_path)
        proc.ready()
        for _ in range(3):
            assert get(port, "/")[0] == 200
        assert get(port, "/")[0] == 200
        got: list[str] = []
        # workers:2 (once both run), then three datagrams per request: 4 requests -> 12
        while sum(1 for d in got if "request" in d) < 12 or "shop.gunicorn.workers:2|g" not in got:
            got.append(receiver.recv(1000).decode())
    requests = [d for d in got if d.startswith("shop.gunicorn.requests:")]
    durations = [d for d in got if d.startswith("shop.gunicorn.request.duration:")]
    statuses = [d for d in got if d.startswith("shop.gunicorn.request.status.")]
    assert requests == ["shop.gunicorn.requests:1|c|@1.0"] * 4
    assert statuses == ["shop.gunicorn.request.status.200:1|c|@1.0"] * 4
    assert len(durations) == 4 and all(re.fullmatch(r"shop\.gunicorn\.request\.duration:\d+\.\d+\|ms", d)
                                       for d in durations), durations
    assert "shop.gunicorn.workers:2|g" in got


# -- -D ---------------------------------------------------------------------------------
def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited; its new parent (init) may not have reaped it yet


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_daemon_detaches_writes_its_pid_and_stops_by_pid(tmp_path: Path) -> None:
    (tmp_path / "asgiapp.py").write_text(ASGI_APP)
    port = free_port()
    pid_file, error = tmp_path / "app.pid", tmp_path / "error.log"
    daemon_pid: Optional[int] = None
    try:
        done = subprocess.run(
            [sys.executable, "-m", "asgiserve", "-D", "-p", str(pid_file), "--error-logfile", str(error), "-w", "2",
             "-b", f"127.0.0.1:{port}", "asgiapp:app"],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
        )
        # The command returns once the daemon serves, so the pid file is there and requests work.
        assert done.returncode == 0, done.stderr
        daemon_pid = int(pid_file.read_text())
        assert done.stderr.strip() == f"asgiserve: serving in the background as PID {daemon_pid}."
        assert get(port, "/")[0] == 200
        stat = Path(f"/proc/{daemon_pid}/stat").read_text().rsplit(")", 1)[1].split()
        ppid, pgrp, session, tty = int(stat[1]), int(stat[2]), int(stat[3]), int(stat[4])
        assert ppid != os.getpid() and session != os.getsid(0) and tty == 0  # detached: no terminal
        assert session != daemon_pid  # not a session leader: it can never acquire a terminal
        assert os.readlink(f"/proc/{daemon_pid}/fd/0") == "/dev/null"
        os.kill(daemon_pid, signal.SIGTERM)
        end = time.monotonic() + DEADLINE
        while not _gone(daemon_pid) or pid_file.exists():
            assert time.monotonic() < end, "the daemon did not stop on SIGTERM"
            time.sleep(0.02)
        assert "Supervisor %d stopped." % daemon_pid in error.read_text()
        daemon_pid = None
    finally:
        if daemon_pid is not None and not _gone(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)


def test_daemon_that_cannot_start_reports_why_and_exits_3(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "asgiserve", "-D", "-b", f"127.0.0.1:{free_port()}",
                           "no_such_module:app"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip() == 'Error: could not import module "no_such_module"'
