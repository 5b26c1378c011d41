"""The real command in a real process: exit codes, one-line errors, serving, signals.

Readiness is the server's own "Listening on ..." line on stderr, never a sleep.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import httpx
import pytest

from asgiserve.config import env_names, option_fields

DEADLINE = 20.0


def clean_env() -> dict[str, str]:
    names = {n for f in option_fields() for n in env_names(f)} | {"ASGISERVE_APP"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A running `python -m asgiserve`, its stderr/stdout collected line by line by threads."""

    def __init__(self, args: list[str], cwd: Path, command: Optional[list[str]] = None) -> None:
        self.popen = subprocess.Popen(
            (command or [sys.executable, "-m", "asgiserve"]) + args,
            cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.err_lines: list[str] = []
        self.out_lines: list[str] = []
        self._err_queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.err_lines, self._err_queue), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.out_lines, None), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: object, lines: list[str], q: "Optional[queue.Queue[Optional[str]]]") -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))
            if q is not None:
                q.put(line)
        if q is not None:
            q.put(None)

    def wait_for(self, marker: str) -> str:
        """Block until a stderr line contains ``marker``; return that line."""
        end = time.monotonic() + DEADLINE
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} on stderr in time:\n{self.stderr}")
            try:
                line = self._err_queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process exited before {marker!r}:\n{self.stderr}")
            if marker in line:
                return line.rstrip("\n")

    def finish(self, timeout: float = DEADLINE) -> int:
        code = self.popen.wait(timeout)
        for t in self._threads:
            t.join(5)
        return code

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[object]:
    procs: list[Proc] = []

    def start(*args: str) -> Proc:
        proc = Proc(list(args), tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


def write_app(tmp_path: Path, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return name


HELLO = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello from " + scope["path"].encode()})
"""


def listening_url(proc: Proc) -> str:
    line = proc.wait_for("Listening on ")
    return line.split("Listening on ", 1)[1].strip()


def error_lines(proc: Proc) -> list[str]:
    return [line for line in proc.err_lines if line.startswith("Error")]


# -- failures: one line, right exit code -----------------------------------------------------
def test_bad_flag_exits_2_with_one_line(run: object, tmp_path: Path) -> None:
    proc = run("--no-such-flag", "main:app")  # type: ignore[operator]
    assert proc.finish() == 2
    assert len(proc.err_lines) == 1, proc.stderr
    assert proc.err_lines[0].startswith("Error: ") and "--no-such-flag" in proc.err_lines[0]


def test_bad_value_exits_2(run: object) -> None:
    proc = run("--backlog", "0", "main:app")  # type: ignore[operator]
    assert proc.finish() == 2
    assert proc.err_lines == ["Error: --backlog must be at least 1"]


def test_missing_module_exits_3_with_one_line(run: object) -> None:
    proc = run("no_such_module_here:app")  # type: ignore[operator]
    assert proc.finish() == 3
    assert "Traceback" not in proc.stderr
    assert error_lines(proc) == ['Error: could not import module "no_such_module_here"']


def test_missing_attribute_and_not_callable(run: object, tmp_path: Path) -> None:
    write_app(tmp_path, "appmod", "value = 1\n")
    proc = run("appmod:nothing")  # type: ignore[operator]
    assert proc.finish() == 3
    assert error_lines(proc) == ['Error: attribute "nothing" not found in module "appmod"']
    proc = run("appmod:value")  # type: ignore[operator]
    assert proc.finish() == 3
    assert "Traceback" not in proc.stderr and "not callable" in error_lines(proc)[0]


def test_import_error_inside_the_module_shows_its_traceback(run: object, tmp_path: Path) -> None:
    write_app(tmp_path, "buggy", "import json\nimport a_dependency_that_is_not_installed\napp = None\n")
    proc = run("buggy:app")  # type: ignore[operator]
    assert proc.finish() == 3
    assert "Traceback (most recent call last)" in proc.stderr
    assert 'buggy.py", line 2' in proc.stderr
    assert "ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed'" in proc.stderr
    assert proc.err_lines[-1].startswith('Error: error while importing module "buggy"')
    assert "cli.py" not in proc.stderr  # no frames of ours


def test_port_in_use_exits_3_with_one_line(run: object, tmp_path: Path) -> None:
    write_app(tmp_path, "hello", HELLO)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        proc = run("--port", str(port), "hello:app")  # type: ignore[operator]
        assert proc.finish() == 3
    finally:
        busy.close()
    assert "Traceback" not in proc.stderr
    assert error_lines(proc) == [f"Error: could not bind to 127.0.0.1:{port}: address already in use"]


def test_lifespan_startup_failure_exits_3_with_the_apps_message(run: object, tmp_path: Path) -> None:
    write_app(tmp_path, "failing", """
        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                await receive()
                await send({"type": "lifespan.startup.failed", "message": "database is unreachable"})
        """)
    proc = run("--port", "0", "failing:app")  # type: ignore[operator]
    assert proc.finish() == 3
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc)
    assert "database is unreachable" in line


# -- serving ---------------------------------------------------------------------------------
def test_serves_and_stops_on_sigterm(run: object, tmp_path: Path, http_impl: str) -> None:
    write_app(tmp_path, "hello", HELLO)
    proc = run("--port", "0", "--http", http_impl, "hello:app")  # type: ignore[operator]
    url = listening_url(proc)
    assert url.startswith("http://127.0.0.1:")
    response = httpx.get(url + "/there", timeout=10)
    assert response.status_code == 200 and response.text == "hello from /there"
    assert response.headers["server"] == "asgiserve"
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert any('"GET /there HTTP/1.1" 200' in line for line in proc.out_lines), proc.out_lines


def test_sigint_also_exits_cleanly(run: object, tmp_path: Path) -> None:
    write_app(tmp_path, "hello", HELLO)
    proc = run("--port", "0", "hello:app")  # type: ignore[operator]
    listening_url(proc)
    proc.signal(signal.SIGINT)
    assert proc.finish() == 0, proc.stderr


SLOW = """
import asyncio, sys

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    sys.stderr.write("SLOW REQUEST STARTED\\n")
    sys.stderr.flush()
    await asyncio.sleep(60)
"""


def test_second_sigint_forces_the_exit(run: object, tmp_path: Path, http_impl: str) -> None:
    """A first SIGINT waits for in-flight requests (here up to 30 s); a second one stops now."""
    write_app(tmp_path, "slow", SLOW)
    proc = run("--port", "0", "--http", http_impl, "--lifespan", "off", "--timeout-graceful-shutdown", "30",  # type: ignore[operator]
               "slow:app")
    host, port = listening_url(proc).removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        proc.wait_for("SLOW REQUEST STARTED")
        proc.signal(signal.SIGINT)
        proc.wait_for("in-flight request")
        started = time.monotonic()
        proc.signal(signal.SIGINT)
        proc.finish(timeout=10)
        assert time.monotonic() - started < 10
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("loop, expected", [("auto", "uvloop loop"), ("asyncio", "asyncio loop"), ("uvloop", "uvloop loop")])
def test_loop_choice_is_used_and_logged(run: object, tmp_path: Path, loop: str, expected: str, http_impl: str) -> None:
    write_app(tmp_path, "hello", HELLO)
    proc = run("--port", "0", "--loop", loop, "--http", http_impl, "hello:app")  # type: ignore[operator]
    url = listening_url(proc)
    proc.wait_for(expected)  # "Using <parser> parser, <loop> loop." follows the Listening line
    assert httpx.get(url + "/", timeout=10).text == "hello from /"
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0, proc.stderr


def test_unix_socket_with_umask(run: object, tmp_path: Path, http_impl: str) -> None:
    write_app(tmp_path, "hello", HELLO)
    path = tmp_path / "app.sock"
    proc = run("-b", f"unix:{path}", "-m", "007", "--http", http_impl, "hello:app")  # type: ignore[operator]
    assert listening_url(proc) == f"unix:{path}"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=10) as client:
        response = client.get("http://localhost/via-unix")
    assert response.text == "hello from /via-unix"
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0, proc.stderr
    assert not path.exists()  # our socket file is removed on a clean exit


def test_no_app_serves_the_demo(run: object, tmp_path: Path) -> None:
    proc = run("--port", "0")  # type: ignore[operator]
    url = listening_url(proc)
    assert "demo" in proc.stderr
    page = httpx.get(url + "/", timeout=10)
    assert page.status_code == 200 and "asgiserve" in page.text and "text/html" in page.headers["content-type"]
    api = httpx.get(url + "/api?x=1", timeout=10).json()
    assert api["path"] == "/api" and api["query_string"] == "x=1"
    assert httpx.get(url + "/missing", timeout=10).status_code == 404
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_console_script_and_version(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("asgiserve")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=DEADLINE,
                            env=clean_env())
    assert result.returncode == 0 and result.stdout.startswith("asgiserve ")


def test_programmatic_run(tmp_path: Path) -> None:
    write_app(tmp_path, "hello", HELLO)
    code = "import asgiserve, hello; asgiserve.run(hello.app, port=0, http='h11', access_log=False)"
    proc = Proc([], tmp_path, command=[sys.executable, "-c", code])
    try:
        url = listening_url(proc)
        assert httpx.get(url + "/prog", timeout=10).text == "hello from /prog"
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0, proc.stderr
        assert proc.out_lines == []  # access_log=False reached the server
    finally:
        proc.kill()


def test_programmatic_run_unknown_keyword(tmp_path: Path) -> None:
    code = "import asgiserve; asgiserve.run('m:app', prot=1)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True, timeout=DEADLINE)
    assert result.returncode == 1
    assert "TypeError: run() got an unexpected keyword argument 'prot'" in result.stderr
