"""CPU instructions per request of a whole server process, any server: counted by callgrind.

Timings on this shared 2-core VM move by 5-50% with other load; instruction counts do not. Each
server runs under ``valgrind --tool=callgrind`` (its worker processes too), a client sends N
keep-alive requests over C connections, the server is stopped and callgrind's totals are summed
over every process it started. Two runs (N1 and N2 requests) are subtracted, so start-up and
shutdown cancel out; what remains is user-space work per request (the kernel's part is not
counted: see syscalls with strace). One worker, the harness's command lines (servers.py).

    .venv/bin/python -m benchmarks.instructions --servers asgiserve,uvicorn,granian --app plaintext,starlette

With ``--keep DIR`` the callgrind files of the larger run are kept for callgrind_annotate.
"""
from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

from .servers import HOST, PY, REPO, SERVERS, Opts, compiled_copy, free_port, probe

_COMPILED: dict[str, str] = {}  # the mypyc copy, built once per run for asgiserve-mypyc

APPS = {
    "plaintext": ("benchmarks.apps.asgi_raw:app", "benchmarks.apps.wsgi_raw:app"),
    "starlette": ("benchmarks.apps.starlette_app:app", ""),
    "fastapi": ("benchmarks.apps.fastapi_app:app", ""),
    "flask": ("", "benchmarks.apps.flask_app:app"),
}
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"


async def _client(port: int, count: int, conns: int) -> None:
    left = [count]

    async def one() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while left[0] > 0:
                left[0] -= 1
                writer.write(REQUEST)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {head[:100]!r}")
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if match is None:
                    raise RuntimeError("the bench apps answer with a Content-Length")
                await reader.readexactly(int(match.group(1)))
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(conns))), timeout=600)


def _totals(folder: str) -> int:
    """Sum of callgrind's totals over every process it traced (one file per PID)."""
    total = 0
    for path in glob.glob(os.path.join(folder, "cg.*")):
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    break
    return total


def run(server: str, app: str, count: int, conns: int, keep: Optional[str] = None) -> int:
    """Instructions of a server process tree that started, served ``count`` requests and stopped."""
    spec = SERVERS[server]
    port = free_port()
    cmd = spec.build(app, port, Opts(threads=8))
    folder = tempfile.mkdtemp(prefix="cg-")
    vg = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={folder}/cg.%p",
          "--log-file=/dev/null"]
    src = path = REPO
    if spec.compiled:  # its asgiserve/ from the compiled copy (cwd comes first on sys.path), the apps from here
        if "dir" not in _COMPILED:
            _COMPILED["dir"] = compiled_copy(REPO)
        src = _COMPILED["dir"]
        path = src + os.pathsep + REPO
    env = dict(os.environ, PYTHONPATH=path + os.pathsep + os.environ.get("PYTHONPATH", ""), **spec.env(app, Opts()))
    proc = subprocess.Popen(vg + cmd, cwd=src, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{server} exited with {proc.returncode} under valgrind")
            try:
                probe(port, "/", timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{server} not ready under valgrind after 180 s")
                time.sleep(0.2)  # poll interval while valgrind starts the interpreter
        asyncio.run(_client(port, count, conns))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    total = _totals(folder)
    if keep:
        os.makedirs(keep, exist_ok=True)
        for path in glob.glob(os.path.join(folder, "cg.*")):
            shutil.move(path, os.path.join(keep, f"{server}-{os.path.basename(path)}"))
    shutil.rmtree(folder, ignore_errors=True)
    return total


def per_request(server: str, app: str, n1: int, n2: int, conns: int, keep: Optional[str] = None) -> int:
    small = run(server, app, n1, conns)
    large = run(server, app, n2, conns, keep)
    return (large - small) // (n2 - n1)


def main(argv: "list[str] | None" = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0])
    p.add_argument("--servers", default="asgiserve,uvicorn,granian")
    p.add_argument("--app", default="plaintext", help=f"comma list of {', '.join(APPS)}")
    p.add_argument("--requests", default="1000,3000", help="N1,N2: the two runs subtracted")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--keep", help="keep the larger run's callgrind files in this folder")
    a = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install -y valgrind")
    n1, n2 = (int(x) for x in a.requests.split(","))
    print(f"instructions per request (callgrind, user space, whole process tree; {n2 - n1} requests over "
          f"{a.connections} keep-alive connections; {PY})")
    for app_name in a.app.split(","):
        asgi_app, wsgi_app = APPS[app_name]
        for server in a.servers.split(","):
            spec = SERVERS[server]
            app = asgi_app if spec.kind == "asgi" else wsgi_app
            if not app:
                continue
            count = per_request(server, app, n1, n2, a.connections, a.keep)
            print(f"{app_name:<10} {server:<18} {count:>10,}", flush=True)
    if "dir" in _COMPILED:
        shutil.rmtree(_COMPILED.pop("dir"), ignore_errors=True)


if __name__ == "__main__":
    main()
