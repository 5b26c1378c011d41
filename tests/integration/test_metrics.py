"""--metrics in one process (both parsers): each figure moves as a scripted load says it must.

The listener is on 127.0.0.1:0; its port comes from the server's own "Metrics on ..." line.
Figures are read back through prometheus_client's parser, as Prometheus would read them.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asgiserve.wsgi import WSGIMiddleware
from tests.support import RunningServer
from tests.wsclient import WSClient

Serve = Callable[..., RunningServer]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DEADLINE = 10.0


def base_url(server: RunningServer) -> str:
    match = re.search(r"Metrics on (http://127\.0\.0\.1:\d+)/metrics", server.logs.text())
    assert match, server.logs.text()
    return match.group(1)


def scrape(server: RunningServer) -> Samples:
    response = httpx.get(base_url(server) + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(server: RunningServer, check: Callable[[Samples], bool], what: str) -> Samples:
    end = time.monotonic() + DEADLINE
    while True:
        samples = scrape(server)
        if check(samples):
            return samples
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}: {samples}")
        time.sleep(0.02)


def bucket(samples: Samples, name: str, le: str, **labels: str) -> float:
    return value(samples, name + "_bucket", le=le, **labels)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/slow":
        await asyncio.sleep(0.15)
    if path == "/block":
        time.sleep(0.3)  # blocks the event loop: what the lag probe is for
    status = 404 if path == "/missing" else 200
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_requests_by_status_class_and_durations(serve: Serve) -> None:
    server = serve(app, metrics="127.0.0.1:0")
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for path in ("/", "/", "/", "/missing", "/missing", "/boom", "/slow"):
            client.get(path)
    with server.raw() as raw:  # a broken head: the server answers 400 itself
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        assert raw.read_response().status == 400
    samples = wait_until(server, lambda s: value(s, "asgiserve_requests_total", interface="asgi3", status="4xx") == 3,
                         "the 400")
    total = "asgiserve_requests_total"
    assert value(samples, total, interface="asgi3", status="2xx") == 4
    assert value(samples, total, interface="asgi3", status="5xx") == 1
    assert value(samples, total, interface="asgi3", status="1xx") == 0
    duration = "asgiserve_request_duration_seconds"
    assert value(samples, duration + "_count", interface="asgi3") == 7  # the 400 never reached the app
    assert bucket(samples, duration, "+Inf", interface="asgi3") == 7
    assert bucket(samples, duration, "0.1", interface="asgi3") == 6  # /slow took 150 ms
    assert value(samples, duration + "_sum", interface="asgi3") >= 0.15
    assert value(samples, "asgiserve_worker_requests_total", worker="0") == 8
    assert value(samples, "asgiserve_workers") == 1
    assert all(value(samples, "asgiserve_worker_restarts_total", cause=c) == 0 for c in ("crash", "reload"))
    assert not any(name.startswith("asgiserve_wsgi_pool") for name, _ in samples)  # no pool in an ASGI app


def test_in_flight_and_open_connections(serve: Serve) -> None:
    release = threading.Event()

    async def hold(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(hold, metrics="127.0.0.1:0")
    busy = [server.raw() for _ in range(3)]
    idle = [server.raw() for _ in range(2)]
    try:
        for client in busy:
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        samples = wait_until(server, lambda s: value(s, "asgiserve_requests_in_flight", worker="0") == 3,
                             "3 requests in flight")
        assert value(samples, "asgiserve_open_connections", worker="0", protocol="http") == 5
        assert value(samples, "asgiserve_open_connections", worker="0", protocol="websocket") == 0
        release.set()
        for client in busy:
            assert client.read_response().status == 200
        wait_until(server, lambda s: value(s, "asgiserve_requests_in_flight", worker="0") == 0, "none in flight")
    finally:
        for client in busy + idle:
            client.close()
    wait_until(server, lambda s: value(s, "asgiserve_open_connections", worker="0", protocol="http") == 0,
               "connections closed")


def test_open_websockets_are_counted_apart(serve: Serve) -> None:
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    server = serve(echo, metrics="127.0.0.1:0")
    sockets = [WSClient.connect(server.host, server.port) for _ in range(2)]
    try:
        samples = wait_until(server, lambda s: value(s, "asgiserve_open_connections", worker="0",
                                                     protocol="websocket") == 2, "2 WebSockets")
        assert value(samples, "asgiserve_open_connections", worker="0", protocol="http") == 0
        assert value(samples, "asgiserve_requests_in_flight", worker="0") == 0  # not requests
    finally:
        for ws in sockets:
            ws.close()
    wait_until(server, lambda s: value(s, "asgiserve_open_connections", worker="0", protocol="websocket") == 0,
               "WebSockets closed")


def sleepy_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    time.sleep(float(environ.get("QUERY_STRING") or "0.4"))
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def test_saturated_wsgi_pool_queues_and_its_wait_grows(serve: Serve) -> None:
    server = serve(sleepy_wsgi, metrics="127.0.0.1:0", threads=2, interface="wsgi")
    wait = "asgiserve_wsgi_pool_queue_wait_seconds"
    with ThreadPoolExecutor(8) as clients:
        futures = [clients.submit(httpx.get, server.url + "/", timeout=10) for _ in range(8)]
        first = wait_until(server, lambda s: value(s, "asgiserve_wsgi_pool_queued_requests", worker="0") >= 3
                           and value(s, "asgiserve_wsgi_pool_busy_threads", worker="0") == 2,
                           "requests queued behind a saturated pool")
        assert value(first, "asgiserve_wsgi_pool_size", worker="0") == 2
        later = wait_until(server, lambda s: value(s, wait + "_sum") > value(first, wait + "_sum") + 0.3,
                           "the queue wait to grow")
        assert value(later, wait + "_count") > value(first, wait + "_count")
        assert all(f.result().status_code == 200 for f in futures)
    samples = wait_until(server, lambda s: value(s, "asgiserve_wsgi_pool_busy_threads", worker="0") == 0, "idle pool")
    assert value(samples, "asgiserve_wsgi_pool_queued_requests", worker="0") == 0
    assert value(samples, wait + "_count") == 8
    # 8 requests of 0.4 s on 2 threads: the last four waited about 0.8 and 1.2 s for a thread.
    assert value(samples, wait + "_count") - bucket(samples, wait, "0.5") >= 2
    assert value(samples, "asgiserve_requests_total", interface="wsgi", status="2xx") == 8


def test_bridge_mounted_in_an_asgi_app_counts_as_wsgi(serve: Serve) -> None:
    bridge = WSGIMiddleware(sleepy_wsgi, threads=3)

    async def router(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await bridge(scope, receive, send)  # stops the pool at shutdown
        elif scope["path"] == "/sync":
            await bridge(scope, receive, send)
        else:
            await app(scope, receive, send)

    server = serve(router, metrics="127.0.0.1:0")
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(2):
            assert client.get("/sync?0.01").status_code == 200
            assert client.get("/").status_code == 200
    samples = wait_until(server, lambda s: value(s, "asgiserve_requests_total", interface="wsgi", status="2xx") == 2,
                         "two WSGI requests")
    assert value(samples, "asgiserve_requests_total", interface="asgi3", status="2xx") == 2
    assert value(samples, "asgiserve_wsgi_pool_size", worker="0") == 3
    assert value(samples, "asgiserve_wsgi_pool_queue_wait_seconds_count") == 2


def test_a_blocking_async_handler_shows_as_loop_lag(serve: Serve) -> None:
    server = serve(app, metrics="127.0.0.1:0")
    lag = "asgiserve_event_loop_lag_seconds"

    def slow_probes(s: Samples) -> float:  # probes that found the loop late by more than 250 ms
        return bucket(s, lag, "+Inf", worker="0") - bucket(s, lag, "0.25", worker="0")

    before = wait_until(server, lambda s: bucket(s, lag, "+Inf", worker="0") > 0, "a first probe")
    assert slow_probes(before) == 0
    assert httpx.get(server.url + "/block", timeout=5).status_code == 200
    after = wait_until(server, lambda s: slow_probes(s) >= 1, "a late probe")
    assert value(after, lag + "_sum", worker="0") - value(before, lag + "_sum", worker="0") >= 0.25


def test_live_page_json_and_errors(serve: Serve) -> None:
    server = serve(app, metrics="127.0.0.1:0")
    httpx.get(server.url + "/")
    url = base_url(server)
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert b"live figures" in page.content and b"metrics.json" in page.content
    data = httpx.get(url + "/metrics.json").json()
    assert data["mode"] == "single" and data["workers"][0]["worker"] == 0
    assert data["combined"]["requests"]["asgi3"][2] == 1  # one 2xx
    assert len(data["buckets"]["duration"]) + 2 == len(data["combined"]["duration"]["asgi3"])
    assert httpx.get(url + "/nope").status_code == 404
    assert httpx.post(url + "/metrics").status_code == 405
    head = httpx.head(url + "/metrics")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0


def test_off_by_default(serve: Serve) -> None:
    server = serve(app)
    assert server.server.state is not None and server.server.state.metrics is None
    assert "Metrics on" not in server.logs.text()


# Load from another process: client threads in the test process would compete with the server
# for the GIL and show up as queue wait and latency of their own.
LOAD = r"""
import asyncio, sys

async def client(port, path, until):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: load\r\n\r\n".encode()
    loop, done = asyncio.get_running_loop(), 0
    while loop.time() < until:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
        done += 1
    writer.close()
    return done

async def main(port, seconds, *specs):
    until = asyncio.get_running_loop().time() + float(seconds)
    clients = [client(int(port), path, until) for path, n in (s.split("=") for s in specs) for _ in range(int(n))]
    print(sum(await asyncio.gather(*clients)))

asyncio.run(main(*sys.argv[1:]))
"""


def load(port: int, seconds: float, clients: dict[str, int]) -> "subprocess.Popen[str]":
    """Keep-alive clients in a subprocess, each sending one request after another ({path: clients})."""
    specs = [f"{path}={n}" for path, n in clients.items()]
    return subprocess.Popen([sys.executable, "-c", LOAD, str(port), str(seconds), *specs],
                            stdout=subprocess.PIPE, text=True)


@pytest.fixture
def example() -> Iterator[Any]:
    from examples import sync_vs_async

    yield sync_vs_async.app


def test_sync_vs_async_example_under_load(serve: Serve, example: Any) -> None:
    """The example's point, in figures: more clients saturate the 8-thread pool and grow its queue
    wait, while the async handler keeps its 50 ms."""
    server = serve(example, metrics="127.0.0.1:0", access_log=False)

    def p_over(samples: Samples, base: Samples, name: str, le: str, **labels: str) -> float:
        """Share of the observations between two scrapes above ``le``."""
        count = value(samples, name + "_count", **labels) - value(base, name + "_count", **labels)
        below = bucket(samples, name, le, **labels) - bucket(base, name, le, **labels)
        assert count > 0, name
        return (count - below) / count

    wait, duration = "asgiserve_wsgi_pool_queue_wait_seconds", "asgiserve_request_duration_seconds"
    start = scrape(server)
    light = load(server.port, 1.5, {"/sync": 4, "/async": 4})  # fewer clients than threads: no queue
    assert int(light.communicate(timeout=30)[0]) > 0
    after_light = scrape(server)
    heavy = load(server.port, 2.0, {"/sync": 32, "/async": 32})  # four times the threads
    # Every thread busy and a queue behind them (polled: between two jobs a thread is briefly idle).
    wait_until(server, lambda s: value(s, "asgiserve_wsgi_pool_queued_requests", worker="0") > 8
               and value(s, "asgiserve_wsgi_pool_busy_threads", worker="0") == 8, "a saturated pool and a queue")
    assert int(heavy.communicate(timeout=30)[0]) > 0
    after_heavy = scrape(server)
    assert p_over(after_light, start, wait, "0.01") < 0.2  # almost nobody waited
    assert p_over(after_heavy, after_light, wait, "0.05") > 0.5  # most waited more than a request's 50 ms
    assert p_over(after_light, start, duration, "0.075", interface="wsgi") < 0.2
    assert p_over(after_heavy, after_light, duration, "0.1", interface="wsgi") > 0.8  # sync: 50 ms became 200
    assert p_over(after_heavy, after_light, duration, "0.1", interface="asgi3") < 0.2  # async: still 50 ms
    assert json.loads(httpx.get(base_url(server) + "/metrics.json").content)["combined"]["pool"][0] == 8
