"""Run h2load (nghttp2) pinned to the client core: the load generator of the HTTP/2 scenarios.

Like ``wrk.py``: one run per measurement, bounded by a deadline, its CPU time from ``wait4()``. h2load
runs for a fixed time (``-D``), over cleartext HTTP/2 with prior knowledge (``http://`` URLs), with
``-c`` connections of ``-m`` concurrent streams each and one thread. Its summary lines give the request
counts (succeeded, failed, errored, timeout) and the status classes; ``--log-file`` gives every
request's start time and duration, from which the latency percentiles come, and the time of the last
response: a server that closes or stalls a connection mid-run (h2load does not reconnect in ``-D``
mode) shows up as responses that stop well before the window ends.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from .client import pin, run_client

H2LOAD_MISSING = "h2load not found: install it with `sudo apt-get install -y nghttp2-client` (Debian/Ubuntu)"
STALL_S = 0.5  # responses stopping this long before the window ends: the server cut or stalled a connection

_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: .*?\((\d+)\) total")


def find_h2load() -> Optional[str]:
    return shutil.which("h2load")


def version() -> str:
    exe = find_h2load()
    if exe is None:
        return "missing"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.split()
    return out[-1] if out else "?"


@dataclass
class H2Result:
    """The shape of WrkResult (so the harness's statistics apply), plus h2load's own counts."""

    requests: int  # succeeded (2xx-5xx answered and complete); failed ones do not count
    seconds: float  # the measurement window (-D)
    bytes: int
    errors: dict[str, int]  # failed / errored / timeout / non-2xx, only the non-zero ones
    latency_us: dict[str, float]
    wrk_cpu: float  # h2load's user+system CPU seconds (named as wrk's, for the shared tables)
    wall: float
    started: int = 0
    done: int = 0
    last_response_s: float = 0.0  # when the last response ended, from the start of the window
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def stalled(self) -> bool:
        """Responses stopped well before the window ended: a connection was closed or left hanging."""
        return self.done > 0 and self.seconds - self.last_response_s > max(STALL_S, 0.1 * self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "seconds": self.seconds, "bytes": self.bytes, "errors": self.errors,
                "latency_us": self.latency_us, "wrk_cpu": self.wrk_cpu, "wall": self.wall, "client": "h2load",
                "started": self.started, "done": self.done, "last_response_s": self.last_response_s,
                "stalled": self.stalled, "h2load": self.counts}


def parse(stdout: str, log_lines: list[str], duration: float) -> dict[str, Any]:
    """h2load's summary and per-request log -> counts, latency percentiles, last response time."""
    m = _REQUESTS.search(stdout)
    if m is None:
        raise ValueError("no 'requests:' line in h2load's output")
    total, started, done, ok, failed, errored, timeout = (int(x) for x in m.groups())
    s = _STATUS.search(stdout)
    status = [int(x) for x in s.groups()] if s else [0, 0, 0, 0]
    t = _TRAFFIC.search(stdout)
    rows = []
    for line in log_lines:
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].strip().lstrip("-").isdigit():
            rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    lat = sorted(d for _, code, d in rows if code > 0)
    first = min((start for start, _, _ in rows), default=0)
    last = max((start + d for start, _, d in rows), default=first)
    return {
        "counts": {"total": total, "started": started, "done": done, "succeeded": ok, "failed": failed,
                   "errored": errored, "timeout": timeout, "2xx": status[0], "3xx": status[1],
                   "4xx": status[2], "5xx": status[3]},
        "bytes": int(t.group(1)) if t else 0,
        "latency_us": _percentiles(lat),
        # The log starts with the first request, a few hundred µs into the window at most.
        "last_response_s": min(duration, (last - first) / 1e6) if rows else 0.0,
    }


def _percentiles(lat: list[int]) -> dict[str, float]:
    if not lat:
        return {k: 0.0 for k in ("p50", "p90", "p99", "max", "mean")}

    def at(q: float) -> float:
        return float(lat[min(len(lat) - 1, int(q * len(lat)))])

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": float(lat[-1]),
            "mean": sum(lat) / len(lat)}


def run_h2load(url: str, connections: int, streams: int, duration: float, cpu: Optional[int],
               timeout_s: float = 10.0) -> H2Result:
    """``h2load -c connections -m streams -t 1 -D duration`` against ``url`` (h2c prior knowledge)."""
    exe = find_h2load()
    if exe is None:
        raise RuntimeError(H2LOAD_MISSING)
    seconds = max(1, round(duration))
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".tsv", delete=False) as f:
        log = f.name
    cmd = pin(cpu) + [exe, "-t1", f"-c{max(1, connections)}", f"-m{max(1, streams)}", f"-D{seconds}",
                 f"-N{int(timeout_s)}", f"--log-file={log}", url]
    deadline = seconds + timeout_s + 30
    try:
        run = run_client(cmd, deadline)
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()
    finally:
        os.unlink(log)
    try:
        d = parse(run.stdout, lines, seconds)
    except ValueError:
        raise RuntimeError(f"h2load failed ({run.returncode}, {run.wall:.0f}s): {run.stderr.strip()[-500:]} "
                           f"{run.stdout.strip()[-500:]}") from None
    c = d["counts"]
    errors = {k: c[k] for k in ("failed", "errored", "timeout") if c[k]}
    non2xx = c["3xx"] + c["4xx"] + c["5xx"]
    if non2xx:
        errors["status"] = non2xx
    if c["succeeded"] == 0:
        errors["none succeeded"] = 1
    return H2Result(requests=c["succeeded"], seconds=float(seconds), bytes=d["bytes"], errors=errors,
                    latency_us=d["latency_us"], wrk_cpu=run.cpu, wall=run.wall,
                    started=c["started"], done=c["done"], last_response_s=d["last_response_s"], counts=c)


def probe(port: int, path: str, timeout: float, host: str = "127.0.0.1") -> int:
    """One GET over a fresh h2c (prior knowledge) connection; returns the status. Readiness and drain."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", f"{host}:{port}".encode()),
                          (b":path", path.encode())], end_stream=True)
    deadline = time.monotonic() + timeout
    status = 0
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(conn.data_to_send())
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete h2 response within {timeout}s")
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed before the h2 response ended")
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:  # e.g. an HTTP/1.1 answer: not h2c
                raise ConnectionError(f"not an h2c response: {e}") from None
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    conn.close_connection()
                    sock.sendall(conn.data_to_send())
                    return status
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise ConnectionError(f"h2 probe ended by the server: {event}")
            sock.sendall(conn.data_to_send())
