"""Run scenarios: start servers, warm up, alternate rounds, record raw measurements.

Within a scenario all servers are started at once so rounds can alternate A B C / C B A: drift on
this shared machine then hits every server alike. Each is measured alone: every other server of the
scenario is frozen (SIGSTOP) meanwhile, so no idle timer or runtime thread of another server shares
the server core (granian keeps threads; uvicorn and asgiserve run periodic timers). After every measurement one
probe request is sent and awaited, so a server still working off queued requests (a small thread pool
at high concurrency) has drained before the next one starts.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional, TextIO

from . import memory
from .h2load import H2Result, run_h2load
from .scenarios import Scenario, Variant
from .servers import SERVERS, ServerProcess, probe
from .wrk import WrkResult, run_wrk
from .wsload import WsResult, run_echo

SATURATED = 0.90  # wrk CPU / wall above this: the load generator, not the server, was the limit
NOISY = 0.15  # other processes used more than this share of the server's core: measure again


@dataclass
class Settings:
    rounds: int
    duration: float
    warmup: float
    server_cpu: Optional[int]
    client_cpu: Optional[int]
    retries: int = 2
    retry_budget: int = 0  # repeats left for the whole run, so a noisy machine cannot stretch it unboundedly
    freeze: bool = True  # SIGSTOP the servers not being measured


class Progress:
    def __init__(self, total: int, out: TextIO = sys.stdout) -> None:
        self.total, self.done, self.start, self.out = total, 0, time.monotonic(), out

    def line(self, text: str, count: bool = True) -> None:
        if count:
            self.done += 1
        el = time.monotonic() - self.start
        tag = f"[{self.done:>3}/{self.total}]" if count else " " * (len(str(self.total)) * 2 + 3)
        self.out.write(f"{tag} {int(el // 60):>2}:{int(el % 60):02d}  {text}\n")
        self.out.flush()


def rounds(s: Scenario, st: Settings) -> int:
    return min(st.rounds, s.max_rounds or st.rounds)


def planned(s: Scenario, st: Settings) -> int:
    if s.kind in ("memory", "ws-memory"):
        return len(s.variants)
    return len(s.variants) * len(s.concurrency) * rounds(s, st)


def _probe_path(s: Scenario, v: Variant) -> str:
    return "/" if s.post_bytes else (v.path or s.path)


@contextlib.contextmanager
def started(s: Scenario, st: Settings, failures: dict[str, str], progress: Progress) -> Iterator[dict[str, ServerProcess]]:
    procs: dict[str, ServerProcess] = {}
    try:
        for v in s.variants:
            p = ServerProcess(SERVERS[v.server], v.app, v.opts, st.server_cpu)
            procs[v.id] = p
        for vid, p in list(procs.items()):
            v = next(x for x in s.variants if x.id == vid)
            try:
                p.wait_ready(_probe_path(s, v))
            except RuntimeError as e:
                failures[f"{s.name}/{vid}"] = str(e)
                progress.total -= planned(replace(s, variants=(v,)), st)
                last = str(e).strip().splitlines()
                progress.line(f"{s.name:<13} {vid}: FAILED to start ({last[-1] if last else '?'}); skipped", False)
                p.stop()
                del procs[vid]
        yield procs
    finally:
        for vid, p in procs.items():
            p.stop()
            if p.killed:
                progress.line(f"{s.name:<13} {vid}: did not exit within 10 s of SIGTERM; killed", False)


def core_busy_seconds(cpu: Optional[int]) -> float:
    """Seconds one core spent running tasks (or stolen by the hypervisor) since boot (-1 if unknown)."""
    if cpu is None:
        return -1.0
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    # user nice system idle iowait irq softirq steal: task time plus hypervisor steal.
                    # (Interrupt time is left out: much of it is our own loopback traffic.)
                    user, nice, system, _, _, _, _, steal = (int(x) for x in line.split()[1:9])
                    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    return -1.0


def _drain(p: ServerProcess, path: str, timeout: float) -> None:
    with contextlib.suppress(OSError):
        probe(p.port, path, timeout=timeout, tls=p.opts.tls, h2=p.opts.h2)


def run_load(s: Scenario, st: Settings, progress: Progress, failures: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with started(s, st, failures, progress) as procs:
        variants = [v for v in s.variants if v.id in procs]
        if st.freeze:
            for p in procs.values():
                p.freeze()
        for v in variants:  # warm-up at the highest load the scenario uses; results discarded
            with alone(procs[v.id], st.freeze) as p:
                _load(s, v, p, max(s.concurrency), st.warmup, st.client_cpu)
                _drain(p, _probe_path(s, v), s.timeout_s + 30)
        points = [(v, c) for v in variants for c in s.concurrency]
        for r in range(rounds(s, st)):
            for v, c in (points if r % 2 == 0 else points[::-1]):
                with alone(procs[v.id], st.freeze) as p:
                    rows.append(_measure(s, st, v, c, r, p, progress))
    return rows


@contextlib.contextmanager
def alone(p: ServerProcess, freeze: bool) -> Iterator[ServerProcess]:
    """The one server of a scenario that may run; the others stay frozen."""
    if not freeze:
        yield p
        return
    p.thaw()
    try:
        yield p
    finally:
        p.freeze()


def _load(s: Scenario, v: Variant, p: ServerProcess, c: int, duration: float,
          cpu: Optional[int]) -> "WrkResult | WsResult | H2Result":
    """wrk for HTTP scenarios; wsload (a closed-loop WebSocket echo client) for the WebSocket ones; h2load
    (c connections of ``s.h2_streams`` concurrent streams each) for the HTTP/2 ones."""
    if s.kind == "ws":
        return run_echo(p.port, c, duration, cpu, s.ws_bytes, s.ws_binary, s.timeout_s)
    if s.kind == "h2":
        return run_h2load(p.url + (v.path or s.path), c, s.h2_streams, duration, cpu, s.timeout_s)
    return run_wrk(p.url + (v.path or s.path), c, duration, cpu, s.post_bytes, s.timeout_s, s.unique_targets)


def _measure(s: Scenario, st: Settings, v: Variant, c: int, r: int, p: ServerProcess,
             progress: Progress) -> dict[str, Any]:
    """One measurement; repeated (up to st.retries times) while other processes used the server's core,
    keeping the quietest attempt: the choice looks at the noise, never at the result."""
    best: Optional[dict[str, Any]] = None
    for attempt in range(st.retries + 1):
        row = _attempt(s, st, v, c, r, p)
        if best is None or row["foreign_load"] < best["foreign_load"]:
            best = row
        if row["foreign_load"] <= NOISY or st.retry_budget <= 0:
            break
        if row.get("stalled"):  # the server left its core idle (a cut connection): others filled it, not noise
            break
        if attempt < st.retries:
            st.retry_budget -= 1
            progress.line(f"{s.name:<13} r{r + 1} {v.id:<16} c={c:<4} other processes used "
                          f"{row['foreign_load']:.0%} of the server core: measuring again", False)
    assert best is not None
    best["attempts"] = attempt + 1
    _report(s, v, c, r, best, progress)
    return best


def _attempt(s: Scenario, st: Settings, v: Variant, c: int, r: int, p: ServerProcess) -> dict[str, Any]:
    if s.peak_rss:
        p.reset_peak_rss()
    cpu0, core0 = p.cpu_seconds(), core_busy_seconds(st.server_cpu)
    duration = max(st.duration, s.min_duration) if st.duration > 1 else st.duration  # --quick keeps 1 s
    res = _load(s, v, p, c, duration, st.client_cpu)
    cpu, core = p.cpu_seconds() - cpu0, core_busy_seconds(st.server_cpu) - core0
    # Time the server's core ran something other than the server: other processes, or steal.
    foreign = max(0.0, core - cpu) / res.wall if core0 >= 0 else 0.0
    row: dict[str, Any] = {"variant": v.id, "concurrency": c, "round": r, **res.as_dict(), "server_cpu": cpu,
                           "port": p.port, "foreign_load": foreign}
    if s.peak_rss:
        row["peak_rss"] = p.peak_rss()
    _drain(p, _probe_path(s, v), s.timeout_s + 30)
    return row


def _report(s: Scenario, v: Variant, c: int, r: int, row: dict[str, Any], progress: Progress) -> None:
    wrk_load, srv_load = row["wrk_cpu"] / row["wall"], row["server_cpu"] / row["wall"]
    rps = row["requests"] / row["seconds"] if row["seconds"] else 0.0
    flags = []
    if wrk_load >= SATURATED:
        flags.append("CLIENT-SATURATED" if s.kind in ("ws", "h2") else "WRK-SATURATED")
    if row["errors"]:
        flags.append(f"errors={row['errors']}")
    if row.get("stalled"):
        flags.append(f"STALLED: last response at {row['last_response_s']:.2f} s of {row['seconds']:.0f} s")
    speed = f"{rps:>9,.0f} {'msg' if s.kind == 'ws' else 'req'}/s"
    if s.body_bytes:
        speed += f" {rps * s.body_bytes / 1e6:>7,.0f} MB/s"
    if s.peak_rss:
        speed += f"  peak RSS {row['peak_rss'] / 2**20:5.0f} MiB"
    client = {"ws": "cli", "h2": "h2l"}.get(s.kind, "wrk")
    conc = f"c={c}x{s.h2_streams}" if s.kind == "h2" else f"c={c}"
    progress.line(f"{s.name:<13} r{r + 1} {v.id:<16} {conc:<6}{speed}  p99 {row['latency_us']['p99'] / 1000:>7.1f} ms"
                  f"  srv {srv_load:4.0%} {client} {wrk_load:4.0%} other {row['foreign_load']:4.0%}"
                  + (f"  {' '.join(flags)}" if flags else ""))


def run_memory(s: Scenario, st: Settings, progress: Progress, failures: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for v in s.variants:
        one = Scenario(s.name, s.title, s.kind, (v,), path=s.path)
        with started(one, st, failures, progress) as procs:
            if v.id not in procs:
                continue
            p = procs[v.id]
            row: dict[str, Any] = {"variant": v.id, "idle_rss": p.rss(), "held": {}}
            for n in s.conn_counts:
                try:
                    row["held"][str(n)] = asyncio.run(_hold(p, n))
                except (OSError, RuntimeError, asyncio.TimeoutError) as e:
                    failures[f"{s.name}/{v.id}/{n}"] = f"{type(e).__name__}: {e}"
                    row["held"][str(n)] = {"error": f"{type(e).__name__}: {e}"}
            rows.append(row)
            held = "  ".join(f"{n} conns {h['rss'] / 2**20:6.1f} MiB ({h['open']} open)" if "rss" in h
                             else f"{n} conns FAILED ({h['error']})" for n, h in row["held"].items())
            progress.line(f"{s.name:<13} {v.id:<16} idle {row['idle_rss'] / 2**20:6.1f} MiB  {held}")
    return rows


async def _hold(p: ServerProcess, n: int) -> dict[str, Any]:
    memory.raise_nofile(n + 1024)
    t0 = time.monotonic()
    async with memory.IdleConnections(p.port, n) as idle:
        return {"rss": p.rss(), "open": memory.still_open(idle), "open_seconds": time.monotonic() - t0}
