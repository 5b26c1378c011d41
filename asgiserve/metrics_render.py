"""Snapshots (metrics.py) -> Prometheus metric families, rendered by prometheus_client.

Counters and histograms are combined over the workers, including those that exited (so they
never go backwards across restarts); gauges, the loop-lag histogram and a per-worker request
counter carry a ``worker`` label (a small number a replacement reuses), since what one worker
does is what they are for: a blocked loop or a saturated pool is one process's.
"""
from __future__ import annotations

from typing import Any, Iterator

from .metrics import DURATION_BUCKETS, LAG_BUCKETS, RESTART_CAUSES, STATUS_CLASSES, WAIT_BUCKETS, Snapshot, View

PREFIX = "asgiserve_"


def _buckets(bounds: tuple[float, ...], dump: list[float]) -> tuple[list[tuple[str, float]], float]:
    """Per-bucket counts (+ the sum last) -> prometheus_client's cumulative (le, count) pairs."""
    out = []
    running = 0.0
    for bound, count in zip((*bounds, float("inf")), dump[:-1]):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return out, float(dump[-1])


def families(view: View) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    combined = view.combined
    requests = CounterMetricFamily(PREFIX + "requests", "Responses by interface (asgi3, asgi2, wsgi: served "
                                   "through a WSGI bridge) and status class.", labels=["interface", "status"])
    for interface, classes in sorted(combined.get("requests", {}).items()):
        for name, count in zip(STATUS_CLASSES, classes):
            if count or name != "other":
                requests.add_metric([interface, name], count)
    yield requests
    durations = HistogramMetricFamily(PREFIX + "request_duration_seconds", "From the request head to the end "
                                      "of the response.", labels=["interface"])
    for interface, dump in sorted(combined.get("duration", {}).items()):
        buckets, total = _buckets(DURATION_BUCKETS, dump)
        durations.add_metric([interface], buckets, total)
    yield durations
    if combined.get("wait") is not None:
        waits = HistogramMetricFamily(PREFIX + "wsgi_pool_queue_wait_seconds", "How long WSGI requests waited "
                                      "for a free thread of the bridge's pool.", labels=[])
        buckets, total = _buckets(WAIT_BUCKETS, combined["wait"])
        waits.add_metric([], buckets, total)
        yield waits
    restarts = CounterMetricFamily(PREFIX + "worker_restarts", "Workers replaced, by cause: crash, exit "
                                   "(unasked, clean), timeout (--timeout), max_requests, reload (HUP, --reload), "
                                   "boot_failure.", labels=["cause"])
    for cause in RESTART_CAUSES:
        restarts.add_metric([cause], view.restarts.get(cause, 0))
    yield restarts
    yield GaugeMetricFamily(PREFIX + "workers", "Worker processes serving (1 without a supervisor).",
                            value=view.live_workers)
    yield from _per_worker(view.workers)


def _per_worker(workers: list[tuple[int, Snapshot]]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    served = CounterMetricFamily(PREFIX + "worker_requests", "Responses per worker (restarts from 0 when a "
                                 "worker is replaced).", labels=["worker"])
    in_flight = GaugeMetricFamily(PREFIX + "requests_in_flight", "Requests being served (not WebSockets).",
                                  labels=["worker"])
    connections = GaugeMetricFamily(PREFIX + "open_connections", "Open client connections, by protocol.",
                                    labels=["worker", "protocol"])
    lag = HistogramMetricFamily(PREFIX + "event_loop_lag_seconds", "How late the event loop ran a timer "
                                "(probed every 50 ms): time the loop was busy or blocked.", labels=["worker"])
    pool_size = GaugeMetricFamily(PREFIX + "wsgi_pool_size", "Threads the WSGI bridge's pool may run.",
                                  labels=["worker"])
    pool_busy = GaugeMetricFamily(PREFIX + "wsgi_pool_busy_threads", "Pool threads running a request.",
                                  labels=["worker"])
    pool_queued = GaugeMetricFamily(PREFIX + "wsgi_pool_queued_requests", "WSGI requests waiting for a thread.",
                                    labels=["worker"])
    any_pool = False
    for number, snap in workers:
        worker = str(number)
        served.add_metric([worker], sum(sum(c) for c in snap.get("requests", {}).values()))
        in_flight.add_metric([worker], snap.get("in_flight", 0))
        connections.add_metric([worker, "http"], snap.get("http", 0))
        connections.add_metric([worker, "websocket"], snap.get("websocket", 0))
        if snap.get("lag"):
            buckets, total = _buckets(LAG_BUCKETS, snap["lag"])
            lag.add_metric([worker], buckets, total)
        if snap.get("pool") is not None:
            any_pool = True
            size, busy, queued = snap["pool"]
            pool_size.add_metric([worker], size)
            pool_busy.add_metric([worker], busy)
            pool_queued.add_metric([worker], queued)
    yield from (served, in_flight, connections, lag)
    if any_pool:
        yield from (pool_size, pool_busy, pool_queued)


class _Families:
    """What prometheus_client's generate_latest() wants: an object with collect()."""

    def __init__(self, view: View) -> None:
        self.view = view

    def collect(self) -> Iterator[Any]:
        return families(self.view)


def prometheus_text(view: View) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(_Families(view)), CONTENT_TYPE_LATEST
