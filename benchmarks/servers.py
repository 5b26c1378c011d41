"""Which servers the harness knows, how each is started, and a process handle that always cleans up.

Every server runs ONE worker, pinned to the server core with ``taskset``, on 127.0.0.1 and a free port,
in its own session (process group) so it can be killed whole, by PID, at the end (also on Ctrl-C).
Readiness is an actual HTTP request answered, polled until a deadline: never a fixed sleep.
"""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import psutil

PY = sys.executable
HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = {"dir": REPO}  # where servers import asgiserve and the apps from (--snapshot points it elsewhere)
# "compiled": a copy of SOURCE's asgiserve/ built with mypyc (compiled_copy), for asgiserve-mypyc.


@dataclass(frozen=True)
class Opts:
    """Per-instance knobs a scenario may set."""

    threads: int = 32  # WSGI thread pool, the same size for every server that has one
    keep_alive: Optional[float] = None  # idle keep-alive timeout override (memory scenario)
    limit_body: str = "Hello, world!"  # what the limit server answers
    limit_type: str = "text/plain; charset=utf-8"
    ws: Optional[str] = None  # WebSocket scenarios: uvicorn's --ws value; granian keeps WebSockets on
    tls: bool = False  # serve HTTPS with the harness's self-signed certificate (tls_files())
    h2: bool = False  # HTTP/2 scenarios: h2c (prior knowledge) on, readiness and drain probes speak h2c
    conn_max_requests: Optional[int] = None  # hypercorn's keep_alive_max_requests (requests per connection)


Builder = Callable[[str, int, Opts], list[str]]


def tls_files() -> tuple[str, str]:
    """A self-signed P-256 certificate for 127.0.0.1 and its PKCS#8 key (granian wants PKCS#8),
    made once with openssl into benchmarks/.work/tls/."""
    folder = os.path.join(REPO, "benchmarks", ".work", "tls")
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        os.makedirs(folder, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )
    return cert, key


def _tls_args(o: Opts, cert_flag: str, key_flag: str) -> list[str]:
    if not o.tls:
        return []
    cert, key = tls_files()
    return [cert_flag, cert, key_flag, key]


@dataclass(frozen=True)
class ServerSpec:
    name: str
    kind: str  # "asgi", "wsgi" or "limit": which app attribute it serves
    label: str
    build: Builder
    env: Callable[[str, Opts], dict[str, str]] = field(default=lambda app, opts: {})
    note: str = ""
    compiled: bool = False  # asgiserve from the mypyc-compiled copy (SOURCE["compiled"])


def _asgiserve(http: str) -> Builder:
    def build(app: str, port: int, o: Opts) -> list[str]:
        cmd = [PY, "-m", "asgiserve", app, "--host", HOST, "--port", str(port), "--http", http,
               "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
        if o.keep_alive is not None:
            cmd += ["--timeout-keep-alive", str(o.keep_alive)]
        if o.h2:
            cmd += ["--http2"]
        return cmd + _tls_args(o, "--ssl-certfile", "--ssl-keyfile")
    return build


def _asgiserve_wsgi(app: str, port: int, o: Opts) -> list[str]:
    return _asgiserve("httptools")(app, port, o) + ["--interface", "wsgi", "--threads", str(o.threads)]


def _uvicorn(http: str, lifespan: str = "on") -> Builder:
    def build(app: str, port: int, o: Opts) -> list[str]:
        cmd = [PY, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--http", http,
               "--loop", "uvloop", "--no-access-log", "--log-level", "warning", "--lifespan", lifespan]
        if o.keep_alive is not None:
            cmd += ["--timeout-keep-alive", str(int(o.keep_alive))]
        if o.ws is not None:
            cmd += ["--ws", o.ws]
        return cmd + _tls_args(o, "--ssl-certfile", "--ssl-keyfile")
    return build


def _uvicorn_zttp(app: str, port: int, o: Opts) -> list[str]:
    """uvicorn 0.55's HTTP/2: the zttp parser (HTTP/1.1 and prior-knowledge h2c on one port)."""
    return _uvicorn("zttp")(app, port, o) + ["--http2"]


def _uvicorn_a2wsgi(app: str, port: int, o: Opts) -> list[str]:
    return _uvicorn("httptools", "off")("benchmarks.apps.a2wsgi_wrap:make", port, o) + ["--factory"]


def _a2wsgi_env(app: str, o: Opts) -> dict[str, str]:
    return {"BENCH_WSGI_APP": app, "BENCH_THREADS": str(o.threads)}


def _hypercorn(app: str, port: int, o: Opts) -> list[str]:
    cmd = [PY, "-m", "hypercorn", app, "--bind", f"{HOST}:{port}", "--workers", "1",
           "--worker-class", "uvloop", "--log-level", "warning"]
    if o.keep_alive is not None:
        cmd += ["--keep-alive", str(int(o.keep_alive))]
    if o.conn_max_requests is not None:  # not a command-line flag: a config file (command-line flags still win)
        cmd += ["--config", _hypercorn_config(o.conn_max_requests)]
    return cmd + _tls_args(o, "--certfile", "--keyfile")


def _hypercorn_config(max_requests: int) -> str:
    folder = os.path.join(REPO, "benchmarks", ".work")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"hypercorn-max-requests-{max_requests}.toml")
    with open(path, "w") as f:
        f.write(f"keep_alive_max_requests = {max_requests}\n")
    return path


def _granian(interface: str) -> Builder:
    def build(app: str, port: int, o: Opts) -> list[str]:
        cmd = [PY, "-m", "granian", "--interface", interface, "--host", HOST, "--port", str(port),
               "--workers", "1", "--http", "auto" if o.h2 else "1", "--log-level", "warning", "--no-access-log"]
        if o.ws is None:
            cmd += ["--no-ws"]
        if interface == "asgi":
            cmd += ["--loop", "uvloop"]
        else:
            cmd += ["--blocking-threads", str(o.threads)]
        if o.keep_alive is not None:
            # hyper closes idle keep-alive connections at its header-read timeout, and granian stops
            # accepting beyond --backpressure (default: backlog) open connections.
            cmd += ["--http1-header-read-timeout", "60000", "--backpressure", "20000"]
        return cmd + _tls_args(o, "--ssl-certificate", "--ssl-keyfile") + [app]
    return build


def _gunicorn(worker: str) -> Builder:
    def build(app: str, port: int, o: Opts) -> list[str]:
        cmd = [PY, "-m", "gunicorn", app, "--bind", f"{HOST}:{port}", "--workers", "1",
               "--worker-class", worker, "--log-level", "warning"]
        if worker == "gthread":
            cmd += ["--threads", str(o.threads)]
            if o.keep_alive is not None:
                cmd += ["--keep-alive", str(int(o.keep_alive))]
        return cmd
    return build


def _gunicorn_asgi(app: str, port: int, o: Opts) -> list[str]:
    """gunicorn 27's own ASGI worker; with h2, prior-knowledge h2c next to HTTP/1.1 (`both`: HTTP/1.1
    requests are still served, so the readiness probe may speak either). gunicorn allows h2c only from
    peers in --forwarded-allow-ips, whose default (127.0.0.1,::1) covers the harness."""
    cmd = [PY, "-m", "gunicorn", app, "--bind", f"{HOST}:{port}", "--workers", "1", "--worker-class", "asgi",
           "--asgi-loop", "uvloop", "--log-level", "warning"]
    if o.h2:
        cmd += ["--http-protocols", "h2,h1", "--http2-cleartext", "both"]
    return cmd


def _limit(app: str, port: int, o: Opts) -> list[str]:
    return [PY, "-m", "benchmarks.limit_server", "--host", HOST, "--port", str(port),
            "--body", o.limit_body, "--content-type", o.limit_type]


SERVERS: dict[str, ServerSpec] = {s.name: s for s in [
    ServerSpec("asgiserve", "asgi", "asgiserve (httptools+uvloop)", _asgiserve("httptools")),
    ServerSpec("asgiserve-h11", "asgi", "asgiserve (h11+uvloop)", _asgiserve("h11")),
    ServerSpec("asgiserve-mypyc", "asgi", "asgiserve compiled (mypyc; httptools+uvloop)", _asgiserve("httptools"),
               compiled=True),
    ServerSpec("uvicorn", "asgi", "uvicorn (httptools+uvloop)", _uvicorn("httptools")),
    ServerSpec("uvicorn-h11", "asgi", "uvicorn (h11+uvloop)", _uvicorn("h11")),
    ServerSpec("uvicorn-zttp", "asgi", "uvicorn (zttp+uvloop, --http2)", _uvicorn_zttp),
    ServerSpec("hypercorn", "asgi", "hypercorn (uvloop)", _hypercorn),
    ServerSpec("granian", "asgi", "granian (asgi)", _granian("asgi")),
    ServerSpec("limit", "limit", "limit (canned uvloop Protocol)", _limit),
    ServerSpec("asgiserve-wsgi", "wsgi", "asgiserve WSGI bridge", _asgiserve_wsgi),
    ServerSpec("asgiserve-wsgi-mypyc", "wsgi", "asgiserve WSGI bridge compiled (mypyc)", _asgiserve_wsgi, compiled=True),
    ServerSpec("gunicorn-sync", "wsgi", "gunicorn sync", _gunicorn("sync"),
               note="no keep-alive by design: a new connection per request"),
    ServerSpec("gunicorn-gthread", "wsgi", "gunicorn gthread", _gunicorn("gthread")),
    ServerSpec("gunicorn-asgi", "asgi", "gunicorn (asgi worker, uvloop)", _gunicorn_asgi),
    ServerSpec("uvicorn-a2wsgi", "wsgi", "uvicorn + a2wsgi", _uvicorn_a2wsgi, _a2wsgi_env),
    ServerSpec("granian-wsgi", "wsgi", "granian (wsgi)", _granian("wsgi")),
]}


def compiled_copy(src: str) -> str:
    """A temp dir holding ``src``'s asgiserve/ with the modules setup.py lists compiled by mypyc
    beside their sources (docs/mypyc.md); setup.py and pyproject.toml come from this checkout."""
    dest = tempfile.mkdtemp(prefix="asgiserve-mypyc-")
    shutil.copytree(os.path.join(src, "asgiserve"), os.path.join(dest, "asgiserve"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), dest)
    done = subprocess.run([PY, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=dest, capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, ASGISERVE_COMPILE="1"))
    check = subprocess.run([PY, "-c", "import asgiserve.http.protocol as p; assert p.__file__.endswith('.so')"],
                           cwd=dest, capture_output=True, timeout=60)
    if done.returncode or check.returncode:
        shutil.rmtree(dest, ignore_errors=True)
        raise RuntimeError("mypyc build failed (pip install mypy?):\n" + (done.stderr or done.stdout)[-2000:])
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One running server. ``stop()`` is idempotent and kills the whole process group."""

    def __init__(self, spec: ServerSpec, app: str, opts: Opts, cpu: Optional[int]) -> None:
        self.spec, self.app, self.opts = spec, app, opts
        self.port = free_port()
        self.cmd = spec.build(app, self.port, opts)
        pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
        src = SOURCE["dir"]
        path = src
        if spec.compiled:  # its asgiserve/ first (the working directory comes first on sys.path); apps from src
            src = SOURCE["compiled"]
            path = src + os.pathsep + SOURCE["dir"]
        env = dict(os.environ, PYTHONPATH=path + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   **spec.env(app, opts))
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(pin + self.cmd, cwd=src, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        self.killed = False  # True when SIGTERM did not stop it within 10 s

    @property
    def url(self) -> str:
        return f"{'https' if self.opts.tls else 'http'}://{HOST}:{self.port}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        """Poll with a real request until it is answered; fail fast if the process died."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                probe(self.port, path, timeout=2.0, tls=self.opts.tls, h2=self.opts.h2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.spec.name} not ready after {timeout}s:\n{self.output()}")
                time.sleep(0.05)  # poll interval between connection attempts, not a readiness guess

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.ps] + self.ps.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss(self) -> int:
        return sum(_safe(lambda: p.memory_info().rss, p) for p in self.tree())

    def reset_peak_rss(self) -> None:
        for p in self.tree():
            try:
                with open(f"/proc/{p.pid}/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM (peak RSS) to the current RSS
            except OSError:
                pass

    def peak_rss(self) -> int:
        total = 0
        for p in self.tree():
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def freeze(self) -> None:
        """SIGSTOP the whole group: while another server is measured this one runs nothing at all
        (no timers, no runtime threads), so each server is measured alone on its core."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """TERM the group, then KILL it; never raises (one stubborn server must not strand the others)."""
        if self.proc.returncode is None:
            children = self.tree()[1:]
            self.thaw()  # a frozen process would hold SIGTERM until the grace ran out
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.killed = True
                _killpg(self.proc.pid)
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            # Workers that outlived their parent (gunicorn/granian): by the PIDs we recorded.
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
        if not self.log.closed:
            self.log.close()


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _safe(fn: Callable[[], int], p: psutil.Process) -> int:
    try:
        return fn()
    except psutil.NoSuchProcess:
        return 0


def probe(port: int, path: str, timeout: float, method: str = "GET", tls: bool = False, h2: bool = False) -> int:
    """One request on a fresh connection; returns the status. Used for readiness and to drain queues."""
    if h2:
        from .h2load import probe as h2_probe

        return h2_probe(port, path, timeout)
    if tls:
        import ssl

        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            HOST, port, timeout=timeout, context=ssl._create_unverified_context())  # the harness's own certificate
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        body = b"x" if method == "POST" else None
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()
