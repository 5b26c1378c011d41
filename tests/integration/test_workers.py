"""--workers N in real processes: the supervisor, its signals, and what clients see meanwhile.

Readiness is the supervisor's own log lines; teardown kills only our child's process group.
Tests that exercise HTTP behaviour during a process event (draining a request on TERM) run on
both parsers. The process-model tests (respawn, HUP, TTIN/TTOU, max-requests, --timeout, boot
failure, pid file) use the default parser only: what they check happens in the supervisor and
in the server's accept/shutdown path, which the parser backend does not take part in.
"""
from __future__ import annotations

import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.supervised import Load, Supervised, get, write_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork-based supervisor")

BASE = ["--no-access-log", "--timeout-graceful-shutdown", "5"]
LOAD_THREADS = 4  # at most this many requests are ever in flight


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    procs: list[Supervised] = []

    def _start(*args: str, app: str = "", env: dict[str, str] | None = None) -> Supervised:
        target = app or write_app(tmp_path)
        proc = Supervised([target, *BASE, *args], cwd=tmp_path, env=env)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        proc.kill()


def test_two_workers_serve(start, http_impl: str) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0", "--http", http_impl)
    port = proc.port()
    pids = proc.ready()
    assert len(set(pids)) == 2 and proc.pid not in pids
    for _ in range(20):
        status, headers, body = get(port)
        assert status == 200
        version, pid = body.decode().split()
        assert version == "v1" and int(pid) in pids
    # Without --preload each worker imports the app itself; the supervisor never does.
    assert proc.count(r"^IMPORTED ") == 2 and proc.count(rf"^IMPORTED {proc.pid}$") == 0
    if os.path.exists("/proc/self/cmdline"):  # setproctitle is in the test extra: titles are checked
        def title(pid: int) -> str:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()

        assert title(proc.pid) == "asgiserve: master [workapp:app]"
        assert {title(pid) for pid in pids} == {"asgiserve: worker [workapp:app]"}
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_killed_worker_is_respawned_and_the_signal_logged(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0")
    port = proc.port()
    pids = proc.ready()
    mark = proc.mark()
    os.kill(pids[0], signal.SIGKILL)
    proc.wait_for(rf"Worker {pids[0]} was killed by signal 9 \(SIGKILL\)\. Perhaps out of memory\?", mark)
    new = int(proc.wait_for(r"Worker (\d+) is serving", mark)[0].group(1))
    assert new not in pids
    assert get(port)[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


# -- under continuous load ------------------------------------------------------------------
def test_hup_reload_under_load_loads_new_code_and_drops_nothing(start, tmp_path: Path) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0")
    port = proc.port()
    old = proc.ready()
    with Load(port, LOAD_THREADS) as load:
        load.wait_responses(100)
        source = (tmp_path / "workapp.py").read_text()
        (tmp_path / "workapp.py").write_text(source.replace('VERSION = "v1"', 'VERSION = "v2"'))
        mark = proc.mark()
        proc.signal(signal.SIGHUP)
        new = proc.ready(mark, what="Reload complete")
        for pid in old:
            proc.wait_for(rf"Worker {pid} exited with code 0\.", mark)
        load.wait_responses(100)
    print(f"HUP reload: {load.summary()}")
    assert load.failed == [], load.summary()
    assert not set(new) & set(old)
    assert any(body.startswith("v2 ") for body in load.by_body)
    assert get(port)[2].startswith(b"v2 ")  # the old workers are gone: only new code answers


def test_ttin_then_ttou_under_load(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0")
    port = proc.port()
    proc.ready()
    with Load(port, LOAD_THREADS) as load:
        load.wait_responses(100)
        mark = proc.mark()
        proc.signal(signal.SIGTTIN)
        proc.wait_for(r"SIGTTIN: increasing workers to 3\.", mark)
        third = int(proc.wait_for(r"Worker (\d+) is serving", mark)[0].group(1))
        load.wait_responses(100)
        mark = proc.mark()
        proc.signal(signal.SIGTTOU)
        proc.wait_for(r"SIGTTOU: decreasing workers to 2\.", mark)
        proc.wait_for(r"Worker \d+ exited with code 0\.", mark)
        load.wait_responses(100)
    print(f"TTIN/TTOU: {load.summary()}")
    assert load.failed == [], load.summary()
    assert third > 0


def test_max_requests_recycles_workers_without_failures(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0", "--max-requests", "40", "--max-requests-jitter", "10")
    port = proc.port()
    first = proc.ready()
    with Load(port, LOAD_THREADS) as load:
        mark = proc.mark()
        proc.wait_for(r"reached --max-requests \(\d+\); starting its replacement first", mark, count=3)
        proc.wait_for(r"Worker \d+ exited with code 0\.", mark, count=3)
        load.wait_responses(50)
    print(f"max-requests: {load.summary()}")
    assert load.failed == [], load.summary()
    served_by = {int(body.split()[1]) for body in load.by_body}
    assert served_by - set(first), "replacement workers served requests"


def test_sigkill_under_load_fails_only_requests_in_flight(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0")
    port = proc.port()
    pids = proc.ready()
    with Load(port, LOAD_THREADS) as load:
        load.wait_responses(100)
        mark = proc.mark()
        os.kill(pids[1], signal.SIGKILL)
        proc.wait_for(rf"Worker {pids[1]} was killed by signal 9", mark)
        proc.wait_for(r"Worker \d+ is serving", mark)
        load.wait_responses(100)
    print(f"SIGKILL: {load.summary()}")
    # Only the requests that worker had in flight may fail: at most one per client thread.
    assert len(load.failed) <= LOAD_THREADS, load.summary()
    assert load.ok > 0


# -- stopping -------------------------------------------------------------------------------
def test_term_drains_in_flight_request_and_exits_0(start, http_impl: str) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0", "--http", http_impl)
    port = proc.port()
    proc.ready()
    from tests.integration.supervised import connect, read_all

    sock = connect(port)
    sock.sendall(b"GET /slow?1 HTTP/1.1\r\nHost: test\r\n\r\n")
    proc.wait_for(r"^SLOW-START ")
    proc.signal(signal.SIGTERM)
    proc.wait_for(r"Shutting down gracefully \(SIGTERM\)")
    raw = read_all(sock)  # the worker closes after answering (Connection: close during drain)
    sock.close()
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    assert raw.partition(b"\r\n\r\n")[2].startswith(b"v1 ")
    assert b"connection: close" in raw.lower()
    assert proc.finish() == 0


def test_quit_stops_immediately(start) -> None:
    # A 60 s grace and a 30 s request: a graceful stop would take 30 s, QUIT must not wait.
    proc = start("-w", "2", "-b", "127.0.0.1:0", "--timeout-graceful-shutdown", "60")
    port = proc.port()
    proc.ready()
    from tests.integration.supervised import connect, read_all

    sock = connect(port)
    sock.sendall(b"GET /slow?30 HTTP/1.1\r\nHost: test\r\n\r\n")
    proc.wait_for(r"^SLOW-START ")
    began = time.monotonic()
    proc.signal(signal.SIGQUIT)
    proc.wait_for(r"Shutting down immediately \(SIGQUIT\)")
    assert not read_all(sock).startswith(b"HTTP/1.1 200")  # not waited for
    sock.close()
    assert proc.finish(timeout=15) == 0
    assert time.monotonic() - began < 15


def test_pid_file_and_unix_socket_written_and_removed(start, tmp_path: Path) -> None:
    pid_file, sock_path = tmp_path / "app.pid", tmp_path / "app.sock"
    proc = start("-w", "2", "-b", f"unix:{sock_path}", "-m", "007", "--pid", str(pid_file))
    proc.ready()
    assert pid_file.read_text().strip() == str(proc.pid)
    assert stat.S_IMODE(sock_path.stat().st_mode) == 0o770
    assert get(str(sock_path))[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0
    assert not pid_file.exists()
    assert not sock_path.exists()


# -- failures -------------------------------------------------------------------------------
def test_blocked_event_loop_is_killed_after_timeout_and_replaced(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0", "--timeout", "1")
    port = proc.port()
    proc.ready()
    from tests.integration.supervised import connect, read_all

    sock = connect(port, timeout=30)
    sock.sendall(b"GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
    blocked = int(proc.wait_for(r"^BLOCK-START (\d+)")[0].group(1))
    mark = proc.mark()
    proc.wait_for(rf"Worker {blocked} timed out: its event loop has not checked in for [\d.]+s \(--timeout 1s\)")
    assert read_all(sock) == b""  # the blocked request dies with its worker
    sock.close()
    proc.wait_for(r"Worker \d+ is serving", mark)
    proc.wait_for(rf"Worker {blocked} (exited with code 1|was killed by signal 9)", mark)
    assert get(port)[0] == 200
    assert "stacks of all threads follow" in proc.text and "time.sleep(60)" not in proc.text
    assert 'workapp.py", line' in proc.text  # the dump points at the blocking line of the app
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_boot_failure_halts_with_exit_3_and_one_clear_line(start, tmp_path: Path) -> None:
    write_app(tmp_path, "broken", "import a_module_that_is_not_installed\n")
    proc = start("-w", "2", "-b", "127.0.0.1:0", app="broken:app")
    assert proc.finish() == 3
    errors = [line for line in proc.lines if line.startswith("Error:")]
    assert errors == ['Error: worker failed to boot: error while importing module "broken": '
                      "No module named 'a_module_that_is_not_installed'"], proc.text
    assert proc.text.count("Traceback") <= 1  # the user's traceback once, not once per worker


def test_missing_attribute_halts_with_one_line(start, tmp_path: Path) -> None:
    write_app(tmp_path)
    proc = start("-w", "3", "-b", "127.0.0.1:0", app="workapp:nope")
    assert proc.finish() == 3
    assert [x for x in proc.lines if x.startswith("Error:")] == [
        'Error: worker failed to boot: attribute "nope" not found in module "workapp"']
    assert "Traceback" not in proc.text


def test_reload_with_broken_code_keeps_old_workers(start, tmp_path: Path) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0")
    port = proc.port()
    old = proc.ready()
    with Load(port, LOAD_THREADS) as load:
        load.wait_responses(50)
        (tmp_path / "workapp.py").write_text("raise RuntimeError('bad deploy')\n")
        mark = proc.mark()
        proc.signal(signal.SIGHUP)
        proc.wait_for(r"Reload failed: a new worker could not boot: .*bad deploy.*Keeping 2 worker", mark)
        load.wait_responses(50)
    assert load.failed == [], load.summary()
    assert {int(b.split()[1]) for b in load.by_body} <= set(old)
    assert proc.popen.poll() is None
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_crash_loop_backs_off(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0", env={"CRASH_AT_STARTUP": "1"})
    proc.wait_for(r"worker crashes in the last 60s: waiting [\d.]+s before starting a replacement", count=2)
    assert proc.count(r"Worker \d+ exited with code 1; replacing it\.") >= 3
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_preload_imports_once_in_the_supervisor(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0", "--preload")
    port = proc.port()
    proc.ready()
    assert proc.count(r"^IMPORTED ") == 1
    assert proc.count(rf"^IMPORTED {proc.pid}$") == 1
    assert get(port)[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_user_and_group_switch_in_workers(start, workers: str, tmp_path: Path) -> None:
    """With one worker too: --user must never be ignored (the process would serve as root).
    The unix socket is handed to that user and group, with -m 007's mode (nginx joins the group)."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    path = tmp_path / "app.sock"
    # --preload: the app is read by the supervisor (root); tmp_path is not readable by nobody.
    proc = start("-w", workers, "-b", "127.0.0.1:0", "-b", f"unix:{path}", "-m", "007", "--preload",
                 "--user", "nobody", "--group", str(nobody.pw_gid))
    port = proc.port()
    proc.ready()
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o770)
    import json

    assert json.loads(get(port, "/whoami")[2])["uid"] == nobody.pw_uid
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_workers_leave_when_the_supervisor_is_killed(start) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0")
    proc.port()
    pids = proc.ready()
    mark = proc.mark()
    proc.popen.kill()  # SIGKILL: no chance to stop its workers
    proc.popen.wait(10)
    # stderr stays open while the orphans live; their own lines say they noticed and left.
    proc.wait_for(rf"Supervisor {proc.pid} is gone; worker shutting down\.", mark, count=2)
    proc.wait_for(r"Finished server process\.", mark, count=2)
    for pid in pids:
        assert proc.count(rf"\[{pid}\] \[INFO\] Finished server process\.", mark) == 1
