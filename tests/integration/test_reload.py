"""--reload and --env-file in real processes: a temporary project is edited and the new code
must answer. Readiness is the supervisor's log lines ("Watching ... for changes", "Ready",
"Reload complete") and polling with deadlines, never a sleep.

The backends: watchfiles (native events) and the built-in poller, chosen by
WATCHFILES_FORCE_POLLING or because watchfiles is missing (hidden by a stub package that fails
to import). The tests
run without PYTHONDONTWRITEBYTECODE, as a developer would: bytecode caches are written, and the
edits keep the module's size (v1 -> v2), the case a stale .pyc would hide.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from tests.integration.supervised import Load, Supervised, connect, get

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork-based supervisor")

BASE = ["-b", "127.0.0.1:0", "--no-access-log", "--reload"]
WATCHING = r"Watching .* for changes to "
BACKENDS = ["watchfiles", "forced-polling", "fallback-poller"]

APP = '''
import asyncio, json, os

VERSION = "v1"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/slow":
        os.write(2, b"SLOW-START\\n")
        await asyncio.sleep(float(query or "30"))
    if path == "/stream":  # server-sent events that never end
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        os.write(2, b"STREAM-START\\n")
        while True:
            await send({"type": "http.response.body", "body": b"data: tick\\n\\n", "more_body": True})
            await asyncio.sleep(0.1)
    if path == "/env":
        names = query.split(",")
        body = json.dumps({n: os.environ.get(n) for n in names}).encode()
    else:
        body = f"{VERSION} {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''

WSGI_APP = '''
import os
import re

VERSION = "v1"


def app(environ, start_response):
    body = f"{VERSION} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "workapp.py").write_text(APP)
    return root


@pytest.fixture
def start(project: Path, tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    procs: list[Supervised] = []

    def _start(*args: str, backend: str = "watchfiles", env: Optional[dict[str, str]] = None,
               app: str = "workapp:app") -> Supervised:
        extra = {"PYTHONDONTWRITEBYTECODE": ""}  # empty is unset: caches are written, as in real use
        if backend == "forced-polling":
            extra["WATCHFILES_FORCE_POLLING"] = "1"
        elif backend == "fallback-poller":
            extra["PYTHONPATH"] = with_path(hide(tmp_path, "watchfiles"))
        extra.update(env or {})
        proc = Supervised([app, *BASE, *args], cwd=project, env=extra)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        proc.kill()


def hide(tmp_path: Path, package: str) -> Path:
    """A directory for PYTHONPATH in which ``import package`` fails, as if it were not installed."""
    stubs = tmp_path / f"without-{package}"
    (stubs / package).mkdir(parents=True, exist_ok=True)
    (stubs / package / "__init__.py").write_text(f"raise ImportError('{package} hidden by the test')\n")
    return stubs


def with_path(directory: Path) -> str:
    """PYTHONPATH with ``directory`` first (whatever the test run itself put there stays)."""
    return os.pathsep.join([str(directory), *filter(None, [os.environ.get("PYTHONPATH")])])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def wait_for_body(port: int, prefix: str, timeout: float = 10.0) -> float:
    """Poll until a response starts with ``prefix``; return how long it took."""
    began = time.monotonic()
    last = ""
    while time.monotonic() - began < timeout:
        try:
            last = get(port, timeout=5)[2].decode()
        except OSError as exc:
            last = repr(exc)
        if last.startswith(prefix):
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(f"no {prefix!r} response within {timeout}s; last: {last!r}")


def started(proc: Supervised) -> int:
    port = proc.port()
    proc.ready()
    proc.wait_for(WATCHING)
    return port


# -- reloading ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_edit_is_served_by_the_new_code(start, project: Path, backend: str) -> None:
    proc = start(backend=backend)
    port = started(proc)
    assert get(port)[2].startswith(b"v1 ")
    expected = {"watchfiles": r"\(watchfiles;", "forced-polling": r"\(polling every 0\.5s, WATCHFILES_FORCE_POLLING;",
                "fallback-poller": r"\(polling every 0\.5s;"}[backend]
    proc.wait_for(WATCHING + r"\*\.py " + expected)
    if backend == "fallback-poller":
        assert proc.count(r"watchfiles is not installed: polling for changes every 0\.5s") == 1
    for version in ("v2", "v3"):  # the second edit lands within a second of the first import
        mark = proc.mark()
        edit(project / "workapp.py", f'VERSION = "v{int(version[1]) - 1}"', f'VERSION = "{version}"')
        took = wait_for_body(port, version)
        print(f"{backend}: {version} served {took:.2f}s after the save")
        assert took < 3.0
        proc.wait_for(r"Reloading \(workapp\.py changed\): starting 1 new worker", mark)
        proc.ready(mark, what="Reload complete")
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0


@pytest.mark.parametrize("backend", ["watchfiles", "fallback-poller"])
def test_changes_in_virtualenvs_node_modules_and_caches_trigger_nothing(start, project: Path, backend: str) -> None:
    noise = [".venv/lib/python3.11/site-packages/pkg/mod.py", "node_modules/pkg/build.py", "env2/lib/mod.py",
             "__pycache__/x.py", ".git/hooks/hook.py", ".workapp.py.swp", "workapp.py~", "notes.txt",
             "src/.mypy_cache/x.py"]
    for name in noise:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("x = 1\n")
    (project / "env2" / "pyvenv.cfg").write_text("home = /usr/bin\n")  # a virtualenv under any name
    proc = start(backend=backend)
    port = started(proc)
    proc.wait_for(WATCHING + r".* 2 directories\)")  # the project and src/: nothing else was walked
    mark = proc.mark()
    for name in noise:
        (project / name).write_text("x = 2\n")
    (project / "src" / "new.py").write_text("x = 2\n")  # the sentinel: the only change that counts
    proc.ready(mark, what="Reload complete")
    assert proc.count(r"Reloading \(", mark) == 1, proc.text
    proc.wait_for(r"Reloading \(src/new\.py changed\)", mark)
    assert get(port)[0] == 200


def test_a_broken_edit_keeps_watching_and_the_fix_serves(start, project: Path) -> None:
    proc = start()
    port = started(proc)
    source = (project / "workapp.py").read_text()
    mark = proc.mark()
    (project / "workapp.py").write_text(source + "\ndef broken(:\n")
    proc.wait_for(r"Reload failed: a new worker could not boot: .*SyntaxError.*Keeping 1 worker", mark)
    assert proc.count(r"^SyntaxError: invalid syntax", mark) == 1  # the traceback, once
    assert get(port)[2].startswith(b"v1 ")  # the previous code still answers meanwhile
    mark = proc.mark()
    (project / "workapp.py").write_text("import a_module_that_is_not_installed\n" + source)
    proc.wait_for(r"Reload failed: .*No module named 'a_module_that_is_not_installed'", mark)
    assert proc.count(r"^ModuleNotFoundError: ", mark) == 1  # each broken save shows its own traceback
    (project / "workapp.py").write_text(source.replace('"v1"', '"v2"'))
    wait_for_body(port, "v2")
    assert proc.popen.poll() is None


def test_an_app_broken_at_startup_waits_for_the_fix(start, project: Path) -> None:
    source = (project / "workapp.py").read_text()
    (project / "workapp.py").write_text(source.replace("import asyncio", "import asyncio, missing_module"))
    proc = start("-w", "2")
    port = proc.port()
    proc.wait_for(r"Worker \d+ failed to boot: .*missing_module.*Waiting for a change to the files to try again\.")
    proc.wait_for(WATCHING)
    assert proc.count(r"^ModuleNotFoundError: ") == 1  # once, not once per worker
    mark = proc.mark()
    (project / "workapp.py").write_text(source)
    proc.ready(mark)
    wait_for_body(port, "v1")
    assert proc.count(r"Waiting for a change", mark) == 0 and proc.popen.poll() is None


def test_open_requests_and_streams_do_not_hold_up_a_reload(start, project: Path) -> None:
    proc = start("--timeout-graceful-shutdown", "1")
    port = started(proc)
    old = proc.ready()[0]
    slow = connect(port, timeout=15)
    slow.sendall(b"GET /slow?30 HTTP/1.1\r\nHost: t\r\n\r\n")
    proc.wait_for(r"^SLOW-START")
    stream = connect(port, timeout=15)
    stream.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    proc.wait_for(r"^STREAM-START")
    began = time.monotonic()
    mark = proc.mark()
    edit(project / "workapp.py", '"v1"', '"v2"')
    took = wait_for_body(port, "v2")
    proc.wait_for(rf"Worker {old} exited", mark, timeout=10)
    gone = time.monotonic() - began
    print(f"new code served after {took:.2f}s; the old worker (a 30 s request and an endless stream open) "
          f"exited after {gone:.2f}s with --timeout-graceful-shutdown 1")
    assert took < 3.0 and gone < 5.0
    for sock in (slow, stream):  # both connections were ended, neither hangs
        assert read_to_eof(sock, deadline=5)
        sock.close()


def read_to_eof(sock: socket.socket, deadline: float) -> bool:
    sock.settimeout(deadline)
    while True:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True


def test_two_workers_roll_without_failed_requests(start, project: Path) -> None:
    proc = start("-w", "2")
    port = started(proc)
    old = proc.ready()
    with Load(port, 4) as load:
        load.wait_responses(50)
        mark = proc.mark()
        edit(project / "workapp.py", '"v1"', '"v2"')
        new = proc.ready(mark, what="Reload complete")
        for pid in old:
            proc.wait_for(rf"Worker {pid} exited with code 0\.", mark)
        load.wait_responses(50)
    assert load.failed == [], load.summary()
    assert len(new) == 2 and not set(new) & set(old)
    bodies = {get(port)[2].decode() for _ in range(10)}
    assert all(b.startswith("v2 ") for b in bodies), bodies


def test_a_wsgi_app_reloads(start, project: Path) -> None:
    (project / "legacy.py").write_text(WSGI_APP)
    proc = start(app="legacy:app")
    port = started(proc)
    assert get(port)[2].startswith(b"v1 ")
    edit(project / "legacy.py", '"v1"', '"v2"')
    wait_for_body(port, "v2")


def test_reload_dir_include_and_exclude(start, project: Path, tmp_path: Path) -> None:
    """Only --reload-dir is watched; --reload-include adds a glob; --reload-exclude wins over both."""
    (project / "templates").mkdir()
    (project / "templates" / "page.html").write_text("<p>1</p>")
    (project / "templates" / "draft.html").write_text("<p>1</p>")
    proc = start("--reload-dir", "templates", "--reload-include", "*.html", "--reload-exclude", "draft.*")
    started(proc)
    proc.wait_for(re.escape(f"Watching {tmp_path.resolve() / 'project' / 'templates'} for changes to *.py, *.html "))
    mark = proc.mark()
    (project / "other.py").write_text("x = 1\n")  # outside the --reload-dir
    (project / "templates" / "draft.html").write_text("<p>2</p>")
    (project / "templates" / "page.html").write_text("<p>2</p>")
    proc.ready(mark, what="Reload complete")
    assert [line for line in proc.lines[mark:] if "Reloading (" in line][0].split("Reloading (")[1].startswith(
        "templates/page.html changed)")


# -- --env-file -----------------------------------------------------------------------------
ENV_FILE = """\
# development settings
export GREETING="hello # not a comment"   # a comment
SINGLE='single # kept'
PLAIN=$BASE_URL
BASE_URL=https://example.test
API_URL=${BASE_URL}/api
MULTI="line1
line2"
FROM_SHELL=from-the-file
REMOVED_LATER=here
"""
NAMES = "GREETING,SINGLE,PLAIN,API_URL,MULTI,FROM_SHELL,REMOVED_LATER,ADDED_LATER"


def env_of(port: int) -> dict[str, Optional[str]]:
    return json.loads(get(port, f"/env?{NAMES}")[2])  # type: ignore[no-any-return]


def test_env_file_reaches_the_app_and_is_reloaded(start, project: Path) -> None:
    (project / ".env").write_text(ENV_FILE)
    proc = start("--env-file", ".env", env={"FROM_SHELL": "from-the-shell"})
    port = started(proc)
    old = proc.ready()[0]
    assert env_of(port) == {
        "GREETING": "hello # not a comment", "SINGLE": "single # kept", "PLAIN": "$BASE_URL", "API_URL": "https://example.test/api",
        "MULTI": "line1\nline2", "FROM_SHELL": "from-the-shell", "REMOVED_LATER": "here", "ADDED_LATER": None,
    }
    mark = proc.mark()
    (project / ".env").write_text(ENV_FILE.replace("REMOVED_LATER=here", "ADDED_LATER=new")
                                  .replace("https://example.test", "https://other.test"))
    proc.ready(mark, what="Reload complete")
    proc.wait_for(r"Reloading \(\.env changed\)", mark)
    proc.wait_for(rf"Worker {old} exited", mark)  # until then the old worker may still take a connection
    values = env_of(port)
    assert (values["API_URL"], values["ADDED_LATER"], values["REMOVED_LATER"]) == ("https://other.test/api", "new", None)


def test_env_file_without_reload(project: Path) -> None:
    (project / "settings.env").write_text("GREETING=plain\n")
    proc = Supervised(["workapp:app", "-b", "127.0.0.1:0", "--env-file", "settings.env"], cwd=project)
    try:
        port = proc.port()
        assert env_of(port)["GREETING"] == "plain"
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0
    finally:
        proc.kill()


@pytest.mark.parametrize("args, env, message", [
    (["--env-file", "missing.env"], {}, "Error: --env-file missing.env: no such file"),
    (["--env-file", "workapp.py"], "hide-dotenv",
     "Error: --env-file needs python-dotenv: pip install 'asgiserve[dotenv]'"),
    (["--reload", "--reload-dir", "nowhere"], {}, "Error: --reload-dir nowhere: not a directory"),
    (["--reload", "--preload"], {},
     "Error: --reload cannot be combined with --preload: the workers must import the changed code"),
])
def test_startup_errors_are_one_line_and_exit_2(project: Path, tmp_path: Path, args: list[str], env: object,
                                                 message: str) -> None:
    extra = {"PYTHONPATH": with_path(hide(tmp_path, "dotenv"))} if env == "hide-dotenv" else {}
    proc = Supervised(["workapp:app", "-b", "127.0.0.1:0", *args], cwd=project, env=extra)
    try:
        assert proc.finish() == 2
        assert proc.lines == [message]
    finally:
        proc.kill()
