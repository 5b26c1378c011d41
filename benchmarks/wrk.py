"""Run wrk pinned to the client core and return what it measured plus its own CPU time.

A small Lua ``done()`` hook prints one JSON line (requests, bytes, errors, latency percentiles), so
nothing is scraped from wrk's human output. wrk's CPU time comes from ``wait4`` on its PID: when it is
close to the wall time, wrk's core was saturated and the server was not the bottleneck.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

from .client import pin, run_client

WRK_MISSING = ("wrk not found: install it with `sudo apt-get install -y wrk` (Debian/Ubuntu), "
               "`brew install wrk` (macOS), or build it from https://github.com/wg/wrk")

DONE_HOOK = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""

POST_BODY = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("a", tonumber(os.getenv("BENCH_BODY_BYTES")))
"""


# Every request a different target, so no server can reuse work from the previous identical head.
UNIQUE_TARGET = r"""
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, wrk.path .. "?n=" .. counter)
end
"""


def find_wrk() -> Optional[str]:
    return shutil.which("wrk")


@dataclass
class WrkResult:
    requests: int
    seconds: float  # wrk's measured duration
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]
    wrk_cpu: float  # wrk's user+system CPU seconds
    wall: float  # wall time of the wrk process

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "seconds": self.seconds, "bytes": self.bytes, "errors": self.errors,
                "latency_us": self.latency_us, "wrk_cpu": self.wrk_cpu, "wall": self.wall}


def run_wrk(url: str, connections: int, duration: float, cpu: Optional[int], post_bytes: int = 0,
            timeout_s: float = 10.0, unique: bool = False) -> WrkResult:
    wrk = find_wrk()
    if wrk is None:
        raise RuntimeError(WRK_MISSING)
    script = (POST_BODY if post_bytes else "") + (UNIQUE_TARGET if unique else "") + DONE_HOOK
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    # -t1: one wrk thread on its one core; wrk wants connections >= threads.
    cmd = pin(cpu) + [wrk, "-t1", f"-c{max(1, connections)}", f"-d{max(1, round(duration))}s",
                 f"--timeout={int(timeout_s)}s", "-s", f.name, url]
    env = dict(os.environ, BENCH_BODY_BYTES=str(post_bytes))
    deadline = duration + timeout_s + 30
    try:
        run = run_client(cmd, deadline, env)
    finally:
        os.unlink(f.name)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({run.returncode}, {run.wall:.0f}s): {run.stderr.strip()[-500:]}")
    d = json.loads(line[len("WRKJSON "):])
    return WrkResult(
        requests=d["requests"], seconds=d["duration_us"] / 1e6, bytes=d["bytes"],
        errors={k: d[k] for k in ("connect", "read", "write", "status", "timeout") if d[k]},
        latency_us={k: float(d[k + "_us"]) for k in ("p50", "p90", "p99", "max", "mean")},
        wrk_cpu=run.cpu, wall=run.wall,
    )

