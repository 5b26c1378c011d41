"""--metrics: the live figures, counted where the events happen, combined and rendered here.

Counting is plain Python on the loop thread: lists of ints and a float sum per histogram, a
``bisect`` to find the bucket. prometheus_client's own Counter/Histogram take a lock per value
(4.3 µs for one counter and one histogram observation per request, 12.7 µs through
``labels()``, against 0.6 µs here; a plaintext request costs the whole server about 15 µs), so
they only *render*: a snapshot becomes metric families at scrape time (``families``).
With --metrics off nothing here runs: the hooks are single ``is not None`` checks
(AccessLogger.log, ThreadPool._work, HttpProtocol.send_error, the bridge's Exchange.serve).

Where each figure comes from:
  requests by interface and status class, request durations: ``ServerMetrics.request``,
      called where the access line is made (for every response, logged or not);
  in-flight requests, open HTTP and WebSocket connections: read from ServerState at snapshot;
  WSGI pool size, busy threads, queued requests: read at snapshot from the pools that served
      this server (the bridge marks its requests with its pool, SERVED_BY_POOL); the
      queue-wait histogram is counted by each pool under its own lock (wsgi/pool.py);
  event-loop lag: ``probe`` sleeps LAG_INTERVAL and records how late it woke;
  worker restarts by cause: counted by the supervisor (workers/supervisor.py).
With several workers each one sends its snapshot to the supervisor every PUBLISH_INTERVAL over
its pipe (``S{json}``, under PIPE_BUF so the write is atomic); ``Gatherer`` keeps the latest per
worker, adds the totals of workers that exited, so combined counters never go backwards, and
gives each live worker a small stable number (the ``worker`` label) that a replacement reuses.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from bisect import bisect_left
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Optional

from .wsgi import pool as wsgi_pool

if TYPE_CHECKING:
    from .state import ServerState

Snapshot = dict[str, Any]

# Bucket upper bounds in seconds (+Inf is implied). Requests: prometheus_client's defaults plus
# three below 5 ms, where a plaintext response lands.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                    2.5, 5.0, 7.5, 10.0)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
RESTART_CAUSES = ("crash", "exit", "timeout", "max_requests", "reload", "boot_failure")
LAG_INTERVAL = 0.05  # seconds between loop-lag probes
PUBLISH_INTERVAL = 0.5  # seconds between a worker's snapshots to the supervisor
PIPE_LIMIT = 4000  # a line must fit in PIPE_BUF (4096 on Linux) to be written atomically


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def dump(self) -> list[float]:
        return [*self.counts, self.sum]


class Requests:
    """Responses of one interface: counts by status class, and their durations."""

    __slots__ = ("classes", "durations")

    def __init__(self) -> None:
        self.classes = [0] * len(STATUS_CLASSES)
        self.durations = Histogram(DURATION_BUCKETS)


class ServerMetrics:
    """The figures of one Server (one process). Created only with --metrics."""

    __slots__ = ("state", "interface", "by_interface", "default", "wsgi", "lag", "served_by_pool", "pools")

    def __init__(self, state: "ServerState") -> None:
        self.state = state
        self.served_by_pool = wsgi_pool.SERVED_BY_POOL.get
        self.interface = state.interface
        self.by_interface = {state.interface: Requests(), "wsgi": Requests()}
        self.default = self.by_interface[state.interface]
        self.wsgi = self.by_interface["wsgi"]
        self.lag = Histogram(LAG_BUCKETS)
        wsgi_pool.track_waits(WAIT_BUCKETS)  # pools count their queue waits from now on
        # The pools that served this server's requests (a WSGI app's from the start).
        self.pools: set[wsgi_pool.ThreadPool] = set()
        pool = getattr(state.app, "pool", None)
        if isinstance(pool, wsgi_pool.ThreadPool):
            self.pools.add(pool)

    def request(self, status: int, duration: float) -> None:
        """A response is complete (the hot path: called once per request)."""
        # A request the WSGI bridge served counts as wsgi, also when an ASGI app mounts it.
        pool = self.served_by_pool()
        if pool is None:
            requests = self.default
        else:
            requests = self.wsgi
            self.pools.add(pool)
        cls = status // 100
        requests.classes[cls if 0 < cls < 6 else 0] += 1
        durations = requests.durations
        durations.counts[bisect_left(DURATION_BUCKETS, duration)] += 1
        durations.sum += duration

    def rejected(self, status: int) -> None:
        """A request answered by the server itself before any app saw it (400, 408, 413, 431...)."""
        cls = status // 100
        self.default.classes[cls if 0 < cls < 6 else 0] += 1

    def snapshot(self) -> Snapshot:
        state = self.state
        websockets = ws_running = 0
        for proto in state.connections:
            ws = proto.ws
            if ws is not None:
                websockets += 1
                task = ws.task
                ws_running += task is not None and not task.done()
        snap: Snapshot = {
            "pid": os.getpid(),
            "requests": {name: list(r.classes) for name, r in self.by_interface.items()
                         if name == self.interface or any(r.classes)},
            "duration": {name: r.durations.dump() for name, r in self.by_interface.items()
                         if name == self.interface or any(r.classes)},
            "in_flight": max(0, state.active_requests - ws_running),
            "http": len(state.connections) - websockets,
            "websocket": websockets,
            "lag": self.lag.dump(),
        }
        pools = [pool for pool in self.pools if pool.open]
        if pools or self.interface == "wsgi":
            waits = [0.0] * (len(WAIT_BUCKETS) + 2)
            size = busy = queued = 0
            for pool in pools:
                size += pool.max_threads
                busy += pool.busy
                queued += pool.queued
                add(waits, pool.wait_dump())
            snap["pool"] = [size, busy, queued]
            snap["wait"] = waits
        return snap


def add(into: list[float], values: list[float]) -> None:
    for i, value in enumerate(values):
        into[i] += value


def merge(total: Snapshot, snap: Snapshot, gauges: bool = True) -> None:
    """Add ``snap`` into ``total`` (counters and histograms; gauges too unless told not to)."""
    for key in ("requests", "duration"):
        for name, values in snap.get(key, {}).items():
            mine = total.setdefault(key, {}).setdefault(name, [0] * len(values))
            add(mine, values)
    for key in ("lag", "wait"):
        if snap.get(key) is not None:
            if total.get(key) is None:
                total[key] = [0] * len(snap[key])
            add(total[key], snap[key])
    if gauges:
        for key in ("in_flight", "http", "websocket"):
            total[key] = total.get(key, 0) + snap.get(key, 0)
        if snap.get("pool") is not None:
            pool = total.setdefault("pool", [0, 0, 0])
            add(pool, snap["pool"])


def combine(snaps: list[Snapshot], base: Optional[Snapshot] = None) -> Snapshot:
    total: Snapshot = {"requests": {}, "duration": {}, "in_flight": 0, "http": 0, "websocket": 0, "lag": None}
    if base is not None:
        merge(total, base, gauges=False)
    for snap in snaps:
        merge(total, snap)
    return total


class View:
    """What one scrape shows: each live worker's snapshot and their combination."""

    def __init__(self, mode: str, workers: list[tuple[int, Snapshot]], combined: Snapshot,
                 restarts: "Counter[str]", live_workers: int) -> None:
        self.mode = mode  # "single" or "supervisor"
        self.workers = workers  # (worker number, snapshot)
        self.combined = combined
        self.restarts = restarts
        self.live_workers = live_workers

    def as_json(self) -> bytes:
        return json.dumps({
            "time": time.time(), "mode": self.mode, "workers": [dict(s, worker=n) for n, s in self.workers],
            "combined": self.combined, "restarts": {c: self.restarts.get(c, 0) for c in RESTART_CAUSES},
            "buckets": {"duration": DURATION_BUCKETS, "wait": WAIT_BUCKETS, "lag": LAG_BUCKETS},
            "status_classes": STATUS_CLASSES,
        }, separators=(",", ":")).encode()


def single_view(metrics: ServerMetrics) -> View:
    snap = metrics.snapshot()
    return View("single", [(0, snap)], combine([snap]), Counter(), 1)


class Gatherer:
    """The supervisor's side: the latest snapshot of each worker, and what exited workers served."""

    def __init__(self) -> None:
        self.latest: dict[int, Snapshot] = {}
        self.numbers: dict[int, int] = {}  # pid -> the worker label
        self.retired: Snapshot = combine([])

    def update(self, pid: int, payload: bytes) -> None:
        try:
            snap = json.loads(payload)
        except ValueError:
            return
        if not isinstance(snap, dict):
            return
        self.latest[pid] = snap
        if pid not in self.numbers:
            taken = set(self.numbers.values())
            self.numbers[pid] = next(n for n in range(len(taken) + 1) if n not in taken)

    def retire(self, pid: int) -> None:
        """A worker exited: its counters stay in the totals; its gauges and its number go."""
        snap = self.latest.pop(pid, None)
        self.numbers.pop(pid, None)
        if snap is not None:
            merge(self.retired, snap, gauges=False)

    def view(self, live_workers: int, restarts: "Counter[str]") -> View:
        workers = sorted(((self.numbers[pid], snap) for pid, snap in self.latest.items()), key=lambda x: x[0])
        return View("supervisor", workers, combine([s for _, s in workers], self.retired), restarts, live_workers)


async def probe(metrics: ServerMetrics, sink: Optional[Callable[[bytes], Any]]) -> None:
    """Measure event-loop lag; under a supervisor, also send this worker's snapshot to it."""
    lag = metrics.lag
    clock = time.perf_counter
    next_publish = 0.0
    while True:
        started = clock()
        await asyncio.sleep(LAG_INTERVAL)
        now = clock()
        lag.observe(max(0.0, now - started - LAG_INTERVAL))
        if sink is not None and now >= next_publish:
            next_publish = now + PUBLISH_INTERVAL
            publish(metrics, sink)


def publish(metrics: ServerMetrics, sink: Callable[[bytes], Any]) -> None:
    data = json.dumps(metrics.snapshot(), separators=(",", ":")).encode()
    if len(data) <= PIPE_LIMIT:  # bigger would need a framing the pipe does not have; never expected
        sink(data)
