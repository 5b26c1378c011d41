"""--metrics without sockets: buckets, combining workers, the supervisor's gatherer, rendering,
the address option, and the one-line error when prometheus_client is missing."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asgiserve.config import Config
from asgiserve.errors import ConfigError
from asgiserve.metrics import (
    DURATION_BUCKETS, LAG_BUCKETS, PIPE_LIMIT, STATUS_CLASSES, WAIT_BUCKETS, Gatherer, Histogram, View, combine,
)
from asgiserve.metrics_http import parse_address, respond
from asgiserve.metrics_render import prometheus_text
from asgiserve.wsgi.pool import ThreadPool, track_waits

ROOT = Path(__file__).resolve().parents[2]


def snap(pid: int, ok: int, errors: int = 0, in_flight: int = 0, busy: int = 0) -> dict[str, Any]:
    duration = [0] * (len(DURATION_BUCKETS) + 1) + [0.0]
    duration[0] = ok + errors
    duration[-1] = 0.0001 * (ok + errors)
    return {
        "pid": pid, "requests": {"asgi3": [0, 0, ok, 0, 0, errors]}, "duration": {"asgi3": duration},
        "in_flight": in_flight, "http": 2, "websocket": 1, "lag": [3] + [0] * len(LAG_BUCKETS) + [0.001],
        "pool": [4, busy, 0], "wait": [ok] + [0] * len(WAIT_BUCKETS) + [0.0],
    }


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.0, 0.1, 0.10001, 1.0, 5.0):
        h.observe(value)
    assert h.counts == [2, 2, 1]  # le=0.1 holds 0.1 itself, as Prometheus' `le` says
    assert h.dump()[-1] == pytest.approx(6.20001)


def test_combine_adds_counters_histograms_and_gauges() -> None:
    total = combine([snap(1, 5, 1, in_flight=2, busy=1), snap(2, 7, in_flight=1, busy=3)])
    assert total["requests"]["asgi3"] == [0, 0, 12, 0, 0, 1]
    assert total["duration"]["asgi3"][0] == 13
    assert (total["in_flight"], total["http"], total["websocket"]) == (3, 4, 2)
    assert total["pool"] == [8, 4, 0] and total["wait"][0] == 12 and total["lag"][0] == 6


def test_gatherer_numbers_workers_and_keeps_what_exited_workers_served() -> None:
    g = Gatherer()
    g.update(101, json.dumps(snap(101, 5)).encode())
    g.update(102, json.dumps(snap(102, 7)).encode())
    g.update(103, b"{not json")  # ignored
    view = g.view(2, Counter())
    assert [n for n, _ in view.workers] == [0, 1]
    assert view.combined["requests"]["asgi3"][2] == 12
    g.retire(101)  # worker 0 exits: its requests stay in the totals, its gauges go
    g.update(104, json.dumps(snap(104, 1)).encode())  # its replacement takes number 0
    view = g.view(2, Counter(crash=1))
    assert [(n, s["pid"]) for n, s in view.workers] == [(0, 104), (1, 102)]
    assert view.combined["requests"]["asgi3"][2] == 13
    assert view.combined["in_flight"] == 0 and view.combined["pool"] == [8, 0, 0]
    text, ctype = prometheus_text(view)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text.decode()) for s in f.samples}
    assert samples[("asgiserve_requests_total", (("interface", "asgi3"), ("status", "2xx")))] == 13
    assert samples[("asgiserve_worker_restarts_total", (("cause", "crash"),))] == 1
    assert samples[("asgiserve_workers", ())] == 2
    assert samples[("asgiserve_worker_requests_total", (("worker", "0"),))] == 1
    assert samples[("asgiserve_wsgi_pool_size", (("worker", "1"),))] == 4
    buckets = [v for (name, labels), v in samples.items() if name == "asgiserve_request_duration_seconds_bucket"]
    assert buckets == sorted(buckets) and buckets[-1] == 13  # cumulative, ending at the count
    assert ctype.startswith("text/plain")


def test_a_worker_snapshot_fits_in_one_atomic_pipe_write() -> None:
    huge = 10**15
    s = snap(4194304, huge, huge, huge, huge)
    s["requests"]["wsgi"] = [huge] * len(STATUS_CLASSES)
    s["requests"]["asgi2"] = [huge] * len(STATUS_CLASSES)
    s["duration"]["wsgi"] = s["duration"]["asgi2"] = [huge] * (len(DURATION_BUCKETS) + 1) + [1e300]
    s["lag"] = [huge] * (len(LAG_BUCKETS) + 1) + [1e300]
    s["wait"] = [huge] * (len(WAIT_BUCKETS) + 1) + [1e300]
    assert len(json.dumps(s, separators=(",", ":"))) <= PIPE_LIMIT


def test_pool_waits_are_counted_once_tracking_is_on() -> None:
    pool = ThreadPool(1)
    track_waits(WAIT_BUCKETS)
    done: list[int] = []
    for i in range(3):
        pool.submit(done.append, i)
    assert pool.shutdown(5)
    assert done == [0, 1, 2]
    dump = pool.wait_dump()
    assert sum(dump[:-1]) == 3 and dump[-1] >= 0


def test_listener_routes() -> None:
    view = Gatherer().view(0, Counter())
    assert respond(b"GET /metrics HTTP/1.1\r\n\r\n", lambda: view).startswith(b"HTTP/1.1 200 OK\r\n")
    assert respond(b"GET /x HTTP/1.1\r\n\r\n", lambda: view).startswith(b"HTTP/1.1 404 ")
    assert respond(b"DELETE / HTTP/1.1\r\n\r\n", lambda: view).startswith(b"HTTP/1.1 405 ")
    assert respond(b"garbage\r\n\r\n", lambda: view).startswith(b"HTTP/1.1 400 ")
    page = respond(b"GET /?refresh HTTP/1.0\r\n\r\n", lambda: view)
    assert b"content-type: text/html" in page and page.isascii()
    data = json.loads(respond(b"GET /metrics.json HTTP/1.1\r\n\r\n", lambda: view).split(b"\r\n\r\n", 1)[1])
    assert data["mode"] == "supervisor" and data["workers"] == []


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9100", ("127.0.0.1", 9100)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:9100", ("::1", 9100)),
    ("localhost:9100", ("localhost", 9100)),
])
def test_metrics_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected
    assert Config(metrics=text).metrics == text


@pytest.mark.parametrize("text", ["9100", ":9100", "host:", "host:99999", "::1:9100", "[::1]9100", "h:p"])
def test_bad_metrics_address_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--metrics"):
        Config(metrics=text)


def test_missing_prometheus_client_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from asgiserve.cli import main\n"
            "main(['--metrics', '127.0.0.1:0', 'app:app'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "Error: --metrics needs prometheus_client: pip install 'asgiserve[metrics]'"


def test_view_json_names_the_buckets() -> None:
    data = json.loads(View("single", [], combine([]), Counter(), 1).as_json())
    assert data["buckets"]["duration"] == list(DURATION_BUCKETS)
    assert set(data["restarts"]) == {"crash", "exit", "timeout", "max_requests", "reload", "boot_failure"}
