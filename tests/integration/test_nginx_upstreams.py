"""Past one machine: three asgiserve instances behind a real nginx upstream with keep-alive.

The instances listen on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (all of 127.0.0.0/8 is loopback on
Linux), standing in for three hosts; nginx runs examples/deploy/nginx-upstream.conf with only its
addresses rewritten, so the documented configuration is the one tested. Under continuous load
(client threads against nginx on 127.0.0.1, every other request a POST, which nginx never
retries once sent), each instance (a supervisor with 2 workers) in turn is stopped with SIGTERM
and started again on the same address: no request may fail. What makes that hold: an instance
that stops closes its listening socket at once, in the supervisor too (nginx's next connect is
refused and goes elsewhere, nothing sent; before, the supervisor's copy kept the kernel accepting
into a backlog nobody served, and those connections were reset: 4 POSTs got 502 per run),
answers what is already on its kept-alive connections with "Connection: close", and closes idle
kept-alive connections with a FIN nginx sees before reusing them.
Skipped (with the reason) only when nginx is not installed.
"""
from __future__ import annotations

import re
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.supervised import DEADLINE, Load, Supervised, connect, get, read_all
from tests.integration.test_nginx import MAIN_CONF, NGINX, Nginx, free_port

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install -y nginx)")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deploy" / "nginx-upstream.conf"
EXAMPLE_SERVERS = ("10.0.0.11:8000", "10.0.0.12:8000", "10.0.0.13:8000")
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

# Answers "HOST:PORT PID CLIENT-PORT": which instance served, and on which of nginx's connections.
APP = '''
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["method"] == "POST":  # read the whole body: a POST is only done once it is consumed
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
    host, port = scope["server"]
    body = f"{host}:{port} {os.getpid()} {scope['client'][1] if scope['client'] else 0}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class UpstreamNginx(Nginx):
    """nginx running the upstream example (Nginx's process handling; a different site)."""

    def __init__(self, tmp: Path, addresses: list[str]) -> None:
        import os
        import subprocess

        self.tmp = tmp
        self.port = free_port()
        self.tls_port = None
        site = EXAMPLE.read_text()
        assert "listen 80;" in site and all(s in site for s in EXAMPLE_SERVERS), "example changed: update this test"
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        for example, address in zip(EXAMPLE_SERVERS, addresses):
            site = site.replace(f"server {example} ", f"server {address} ")
        (tmp / "site.conf").write_text(site)
        user = "user root root;" if os.geteuid() == 0 else ""
        (tmp / "nginx.conf").write_text(MAIN_CONF.format(tmp=tmp, user=user))
        self.popen = subprocess.Popen(
            [str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self._wait_listening()


class Instance:
    """One asgiserve "host": 2 workers on HOST:PORT, restartable on the same address."""

    def __init__(self, host: str, cwd: Path) -> None:
        self.host, self.cwd = host, cwd
        self.port = free_port_on(host)
        self.address = f"{host}:{self.port}"
        self.proc: Supervised | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        # --no-proxy-headers: the app reports nginx's own source port (its upstream connection).
        args = ["-w", "2", "-b", self.address, "--no-access-log", "--no-proxy-headers", "upstream_app:app"]
        self.proc = Supervised(args, cwd=self.cwd)
        self.pids = self.proc.ready()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.signal(signal.SIGTERM)
        return self.proc.finish()


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[Instance]]:
    (tmp_path / "upstream_app.py").write_text(APP)
    started = [Instance(host, tmp_path) for host in HOSTS]
    yield started
    for inst in started:
        if inst.proc is not None:
            inst.proc.kill()


def post(port: int, body: bytes) -> tuple[int, bytes]:
    """One POST on a fresh connection to nginx, Connection: close; (status, body)."""
    sock = connect(port)
    try:
        sock.sendall(b"POST /submit HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        raw = read_all(sock)
    finally:
        sock.close()
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete response: {raw[:100]!r}")
    return int(head.split(None, 2)[1]), rest


class MixedLoad(Load):
    """Load's client threads, every other request a POST: nginx never retries a POST it has sent
    to a host (it is not idempotent), so a POST lost on a closing connection would fail here."""

    def _run(self) -> None:
        n = 0
        assert isinstance(self.address, int)
        while not self.stop_event.is_set():
            n += 1
            kind = "POST" if n % 2 else "GET"
            try:
                if kind == "POST":
                    status, body = post(self.address, b"x" * 1000)
                else:
                    status, _, body = get(self.address, "/")
                result = None if status == 200 else f"{kind} status {status}"
            except (OSError, ValueError, IndexError) as exc:
                result, body = f"{kind} {type(exc).__name__}: {exc}", b""
            with self.lock:
                if result is None:
                    self.ok += 1
                    self.by_body[body.decode()] += 1
                else:
                    self.failed.append(result)
                self.lock.notify_all()
                if self.ok + len(self.failed) >= self.max_total:
                    self.stop_event.set()


def served_by(load: Load) -> Counter[str]:
    """Responses per instance address."""
    with load.lock:
        bodies = dict(load.by_body)
    counts: Counter[str] = Counter()
    for body, n in bodies.items():
        counts[body.split()[0]] += n
    return counts


def wait_served_by(load: Load, address: str, pids: list[int], timeout: float) -> None:
    """Until a response came from one of ``pids`` at ``address`` (nginx probes a host it marked
    failed after fail_timeout); progress, not time, decides, within ``timeout``."""
    wanted = {f"{address} {pid}" for pid in pids}
    end = time.monotonic() + timeout
    while True:
        with load.lock:
            if any(" ".join(body.split()[:2]) in wanted for body in load.by_body):
                return
            remaining = end - time.monotonic()
            if remaining <= 0 or load.stop_event.is_set():
                raise AssertionError(f"{address} (pids {pids}) served nothing through nginx; {load.summary()}")
            load.lock.wait(remaining)


@pytest.mark.timeout(180)
def test_rolling_restart_of_three_hosts_behind_nginx_drops_nothing(instances: list[Instance], tmp_path: Path) -> None:
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    for inst in instances:
        inst.start()
    nginx = UpstreamNginx(nginx_dir, [inst.address for inst in instances])
    try:
        with MixedLoad(nginx.port, threads=4) as load:
            for inst in instances:
                wait_served_by(load, inst.address, inst.pids, DEADLINE)
            for inst in instances:
                before = served_by(load)
                assert inst.stop() == 0
                load.wait_responses(50)  # the other two carry the load
                inst.start()
                # nginx marked the stopped host failed for fail_timeout (5 s), then probes it.
                wait_served_by(load, inst.address, inst.pids, 15.0)
                assert served_by(load)[inst.address] > before[inst.address]
            load.wait_responses(100)
        error_log = (nginx_dir / "error.log").read_text()
    finally:
        nginx.stop()
    bodies = dict(load.by_body)
    requests = sum(bodies.values())
    connections = len({(b.split()[0], b.split()[2]) for b in bodies})  # nginx's source ports per instance
    refused = error_log.count("Connection refused")
    closed = len(re.findall(r"upstream prematurely closed|reset by peer|while reading response header", error_log))
    print(f"3 hosts behind nginx, each restarted under load: {load.summary()}; {requests} requests on "
          f"{connections} upstream connections; nginx retried {refused} refused connects and {closed} "
          f"requests on closed kept-alive connections")
    assert load.failed == [], load.summary()
    assert requests > 2 * connections, "nginx did not reuse its upstream connections: keepalive is not in effect"
