"""Build and run ``wsload`` (benchmarks/wsload.c), the WebSocket load generator, pinned to the client core.

No packaged tool does a closed-loop WebSocket echo with latency (Debian has none; wrk speaks no
WebSocket), and a Python client on one core would be slower than the servers it measures. So a small C
program, compiled with the system's cc on first use into ``benchmarks/.work/`` (git ignores it) and
rebuilt when its source changes. Like ``wrk.py``: its result is one JSON line, its CPU time comes from
``wait4()`` (close to the wall time: the client's core, not the server, was the limit), and every run
is killed if it overruns its deadline.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, Any, Optional

from .client import pin, run_client

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "wsload.c")
WORK = os.path.join(HERE, ".work")
CC_MISSING = "no C compiler found (cc or gcc): `sudo apt-get install -y gcc` builds the WebSocket load generator"
ERRORS = ("connect", "handshake", "closed", "mismatch", "protocol")


def find_cc() -> Optional[str]:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def build() -> str:
    """Compile wsload.c (once per source version) and return the binary's path."""
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    binary = os.path.join(WORK, f"wsload-{digest}")
    if os.path.exists(binary):
        return binary
    cc = find_cc()
    if cc is None:
        raise RuntimeError(CC_MISSING)
    os.makedirs(WORK, exist_ok=True)
    tmp = f"{binary}.{os.getpid()}.tmp"
    proc = subprocess.run([cc, "-O2", "-std=gnu11", "-Wall", "-o", tmp, SOURCE], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {SOURCE} failed:\n{proc.stderr[-2000:]}")
    os.replace(tmp, binary)  # atomic: a concurrent build never runs a half-written binary
    return binary


def compiler() -> str:
    cc = find_cc()
    if cc is None:
        return "missing"
    out = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()
    return out[0] if out else "?"


@dataclass
class WsResult:
    """The same shape as WrkResult, so the harness's statistics apply: a request is one echoed message."""

    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]
    wrk_cpu: float  # the load generator's user+system CPU seconds (named as wrk's, for the shared tables)
    wall: float
    deflate: int  # connections on which the server accepted permessage-deflate (0: none offered)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "seconds": self.seconds, "bytes": self.bytes, "errors": self.errors,
                "latency_us": self.latency_us, "wrk_cpu": self.wrk_cpu, "wall": self.wall, "client": "wsload",
                "deflate": self.deflate}


def run_echo(port: int, connections: int, duration: float, cpu: Optional[int], size: int, binary: bool,
             timeout_s: float = 10.0, deflate: bool = False) -> WsResult:
    """Closed-loop echo for ``duration`` seconds over ``connections`` WebSockets; messages of ``size`` bytes."""
    cmd = pin(cpu) + [build(), "echo", "--port", str(port), "--conns", str(connections), "--size", str(size),
                       "--duration", str(duration), "--timeout", str(timeout_s)]
    cmd += (["--binary"] if binary else []) + (["--deflate"] if deflate else [])
    deadline = duration + timeout_s + 30  # handshakes + window + closing handshakes, with room
    run = run_client(cmd, deadline)
    d = _json_line(run.stdout, "WSJSON ")
    if run.returncode != 0 or d is None:
        raise RuntimeError(f"wsload failed ({run.returncode}, {run.wall:.0f}s): {run.stderr.strip()[-500:]} "
                           f"{run.stdout.strip()[-500:]}")
    return WsResult(
        requests=d["messages"], seconds=d["duration_us"] / 1e6, bytes=2 * size * d["messages"],
        errors={k: d[k] for k in ERRORS if d[k]},
        latency_us={k: float(d[k + "_us"]) for k in ("p50", "p90", "p99", "max", "mean")},
        wrk_cpu=run.cpu, wall=run.wall, deflate=d["deflate"],
    )


def _json_line(text: str, tag: str) -> Optional[dict[str, Any]]:
    line = next((ln for ln in text.splitlines() if ln.startswith(tag)), None)
    return json.loads(line[len(tag):]) if line else None


def _readline(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe, or b"" after ``timeout`` seconds (a thread, so the read is bounded)."""
    box: list[bytes] = []
    t = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else b""


class IdleWebSockets:
    """``with IdleWebSockets(port, n, deflate, cpu) as held:`` n open, idle WebSockets (no messages sent).

    ``held.ready`` is wsload's WSREADY record (open, seconds, errors, deflate: how many connections the
    server accepted permessage-deflate on); ``held.release()`` ends the hold and returns the WSJSON record
    (``open``: still open at that moment, so a server that closed idle connections shows it)."""

    def __init__(self, port: int, n: int, deflate: bool, cpu: Optional[int], timeout: float = 120.0) -> None:
        self.port, self.n, self.deflate, self.cpu, self.timeout = port, n, deflate, cpu, timeout
        self.ready: dict[str, Any] = {}
        self.final: Optional[dict[str, Any]] = None
        self.stderr = ""

    def __enter__(self) -> "IdleWebSockets":
        cmd = pin(self.cpu) + [build(), "idle", "--port", str(self.port), "--conns", str(self.n), "--in-flight",
                                "100", "--timeout", str(self.timeout), "--hold", str(self.timeout * 2)]
        cmd += ["--deflate"] if self.deflate else []
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout, self.timeout + 10).decode(errors="replace")
        if not line.startswith("WSREADY "):
            self._kill()
            raise RuntimeError(f"wsload idle: no WSREADY within {self.timeout + 10:.0f}s: {line.strip()!r} "
                               f"{self.stderr}")
        self.ready = json.loads(line[len("WSREADY "):])
        return self

    def release(self) -> dict[str, Any]:
        if self.final is None:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            try:
                self.proc.stdin.write(b"\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            line = _readline(self.proc.stdout, 30).decode(errors="replace")
            self.final = json.loads(line[len("WSJSON "):]) if line.startswith("WSJSON ") else {"error": line}
        return self.final

    def __exit__(self, *exc: Any) -> None:
        try:
            self.release()
            self.proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            pass
        self._kill()

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        if not self.err.closed:
            self.err.seek(0)
            self.stderr = self.err.read().decode(errors="replace").strip()[-500:]
            self.err.close()


def uvicorn_ws_auto() -> str:
    """The backend uvicorn's ``--ws auto`` resolves to in this environment (websockets-sansio in 0.55)."""
    names = {"websockets_sansio_impl": "websockets-sansio", "websockets_impl": "websockets",
             "wsproto_impl": "wsproto"}
    try:
        from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol
    except ImportError:
        return "?"
    if AutoWebSocketsProtocol is None:
        return "none"
    module = AutoWebSocketsProtocol.__module__.rsplit(".", 1)[-1]
    return names.get(module, module)
