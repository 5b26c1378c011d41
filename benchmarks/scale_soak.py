"""Scale soak: many concurrent keep-alive clients for a long while, plus many idle connections.

    python -m benchmarks.scale_soak                       # 1,000 clients x 60 s + 10,000 idle, ASGI and WSGI
    python -m benchmarks.scale_soak --duration 5 --idle 500 --clients 100 --interface asgi   # a quick look

Per interface: start asgiserve (one process, pinned to core 0, fd limit raised, a keep-alive timeout
longer than the run so idle connections stay), open --idle answered keep-alive connections from
this process, warm up with wrk (--clients connections, 5 s), read the server's RSS, run wrk for
--duration, read the RSS again. Passes when wrk saw no error and no non-2xx status, every idle
connection is still open, the RSS grew by at most --rss-growth (10%) over the warm-up figure, and the
server logged no WARNING or ERROR. Exit 1 otherwise. Everything runs on 127.0.0.1 and is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import psutil

from .memory import IdleConnections, raise_nofile, still_open
from .wrk import find_wrk, run_wrk

APPS = {"asgi": "benchmarks.apps.asgi_raw:app", "wsgi": "benchmarks.apps.wsgi_raw:app"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_child_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return int(sum(p.memory_info().rss for p in [proc] + proc.children(recursive=True)))


class Server:
    def __init__(self, app: str, http: str, port: int, nofile: int, extra: list[str]) -> None:
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        cmd = pin + [sys.executable, "-m", "asgiserve", app, "--port", str(port), "--http", http,
                     "--no-access-log", "--timeout-keep-alive", "3600", "--backlog", "4096"] + extra
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=lambda: _raise_child_nofile(nofile))
        self.port = port

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.05)  # poll interval, not a readiness guess
        raise RuntimeError(f"server not ready: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def soak_one(interface: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = Server(APPS[interface], args.http, port, args.idle + args.clients + 1024, args.server_args.split())
    result: dict[str, Any] = {"interface": interface, "http": args.http}
    try:
        server.wait_ready()
        result["rss_start"] = rss(server.proc.pid)
        async with IdleConnections(port, args.idle, timeout=120) as idle:
            result["rss_idle"] = rss(server.proc.pid)
            url = f"http://127.0.0.1:{port}/"
            loop = asyncio.get_running_loop()
            warm = await loop.run_in_executor(None, lambda: run_wrk(url, args.clients, 5, 1))
            result["rss_warm"] = rss(server.proc.pid)
            main = await loop.run_in_executor(None, lambda: run_wrk(url, args.clients, args.duration, 1))
            result["rss_end"] = rss(server.proc.pid)
            result["idle_open"] = still_open(idle)
        result.update(
            requests=main.requests, rps=main.rps, errors=main.error_count + warm.error_count,
            error_kinds={**warm.errors, **main.errors}, p99_ms=main.latency_us["p99"] / 1000,
        )
    finally:
        server.stop()
        problems = [ln for ln in server.output().splitlines() if "[WARNING]" in ln or "[ERROR]" in ln]
        result["log_problems"] = problems[:5]
    growth = result.get("rss_end", 0) / result["rss_warm"] - 1 if result.get("rss_warm") else 1.0
    result["rss_growth"] = growth
    result["ok"] = (
        result.get("errors") == 0 and result.get("idle_open") == args.idle
        and growth <= args.rss_growth and not result["log_problems"]
    )
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--interface", choices=["asgi", "wsgi", "both"], default="both")
    parser.add_argument("--http", choices=["httptools", "h11"], default="httptools")
    parser.add_argument("--rss-growth", type=float, default=0.10, help="allowed RSS growth after warm-up")
    parser.add_argument("--server-args", default="", help="extra asgiserve arguments")
    args = parser.parse_args(argv)
    if find_wrk() is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    raise_nofile(args.idle + args.clients + 1024)
    interfaces = ["asgi", "wsgi"] if args.interface == "both" else [args.interface]
    ok = True
    for interface in interfaces:
        r = asyncio.run(soak_one(interface, args))
        ok = ok and r["ok"]
        mib = 1024 * 1024
        print(
            f"{interface:4} {r['http']}: {'OK' if r['ok'] else 'FAIL'}  {r.get('requests', 0):,} requests "
            f"({r.get('rps', 0):,.0f}/s, p99 {r.get('p99_ms', 0):.1f} ms) from {args.clients} clients over "
            f"{args.duration:g}s, errors {r.get('errors')} {r.get('error_kinds', {})}; "
            f"idle open {r.get('idle_open')}/{args.idle}; RSS MiB start {r.get('rss_start', 0) / mib:.1f}, "
            f"with idle {r.get('rss_idle', 0) / mib:.1f}, after warm-up {r.get('rss_warm', 0) / mib:.1f}, "
            f"end {r.get('rss_end', 0) / mib:.1f} ({r['rss_growth']:+.1%})"
            + (f"; server log: {r['log_problems']}" if r["log_problems"] else ""),
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
