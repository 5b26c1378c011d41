"""--metrics with --workers 2 (real processes): the supervisor's listener combines the workers'
figures, the totals add up and never go backwards when a worker dies, restarts are counted by
cause. Runs on both parsers: the counted responses go through each."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.supervised import Supervised, get, write_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork-based supervisor")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    procs: list[Supervised] = []

    def _start(*args: str) -> Supervised:
        proc = Supervised([write_app(tmp_path), "--no-access-log", "--timeout-graceful-shutdown", "5", *args],
                          cwd=tmp_path)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        proc.kill()


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def served(samples: Samples) -> float:
    return value(samples, "asgiserve_requests_total", interface="asgi3", status="2xx")


def workers(samples: Samples, name: str = "asgiserve_worker_requests_total") -> dict[str, float]:
    return {dict(labels)["worker"]: v for (n, labels), v in samples.items() if n == name}


def wait_for(port: int, check: Callable[[Samples], bool], what: str, timeout: float = 15.0) -> Samples:
    end = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if check(samples):
            return samples
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}: {samples}")
        time.sleep(0.05)


def test_two_workers_figures_add_up(start: Callable[..., Supervised], http_impl: str) -> None:
    proc = start("-w", "2", "-b", "127.0.0.1:0", "--http", http_impl, "--metrics", "127.0.0.1:0")
    port = proc.port()
    mport = int(proc.wait_for(r"Metrics on http://127\.0\.0\.1:(\d+)/metrics")[0].group(1))
    pids = proc.ready()
    for _ in range(40):
        assert get(port)[0] == 200
    samples = wait_for(mport, lambda s: served(s) == 40 and len(workers(s)) == 2, "40 responses from 2 workers")
    assert set(workers(samples)) == {"0", "1"}
    assert sum(workers(samples).values()) == 40  # per-worker figures add up to the combined one
    assert value(samples, "asgiserve_workers") == 2
    assert value(samples, "asgiserve_request_duration_seconds_count", interface="asgi3") == 40
    assert set(workers(samples, "asgiserve_requests_in_flight")) == {"0", "1"}
    assert set(workers(samples, "asgiserve_event_loop_lag_seconds_count")) == {"0", "1"}
    data = httpx.get(f"http://127.0.0.1:{mport}/metrics.json", timeout=5).json()
    assert data["mode"] == "supervisor" and sorted(w["pid"] for w in data["workers"]) == sorted(pids)

    # A worker killed: the totals keep what it served; its replacement takes its number.
    mark = proc.mark()
    os.kill(pids[0], signal.SIGKILL)
    proc.wait_for(r"Worker \d+ is serving", since=mark)
    samples = wait_for(mport, lambda s: value(s, "asgiserve_worker_restarts_total", cause="crash") == 1
                       and len(workers(s)) == 2, "the crash counted and 2 workers again")
    assert served(samples) == 40
    assert set(workers(samples)) == {"0", "1"}
    for _ in range(10):
        assert get(port)[0] == 200
    wait_for(mport, lambda s: served(s) == 50, "50 responses")

    # HUP: both workers replaced (reload); they stop gracefully and report their last figures.
    mark = proc.mark()
    proc.signal(signal.SIGHUP)
    proc.ready(since=mark, what="Reload complete")
    samples = wait_for(mport, lambda s: value(s, "asgiserve_worker_restarts_total", cause="reload") == 2
                       and value(s, "asgiserve_workers") == 2, "2 reload restarts")
    assert served(samples) == 50
    assert value(samples, "asgiserve_worker_restarts_total", cause="crash") == 1
    proc.signal(signal.SIGTERM)
    assert proc.finish() == 0
