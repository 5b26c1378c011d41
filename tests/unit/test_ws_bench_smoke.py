"""Smoke test of the harness's WebSocket echo measurement: about 1 s against asgiserve only.

Nothing here looks at how fast anything is. It checks that wsload (benchmarks/wsload.c) compiles,
completes WebSocket handshakes with asgiserve serving the benchmark's echo app, gets every echo back
(no errors: the first echo of each connection is compared byte for byte), reports a positive message
rate and its own CPU time, that the result fits the harness's tables, and that the server is stopped.
"""
from __future__ import annotations

import socket
import sys

import pytest

from benchmarks import cli, ws, wsload
from benchmarks.scenarios import WS_APP, select
from benchmarks.servers import SERVERS, Opts, ServerProcess

pytestmark = [
    pytest.mark.skipif(wsload.find_cc() is None, reason="no C compiler to build the WebSocket load generator"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="wsload uses epoll (Linux)"),
]


@pytest.mark.timeout(90)
def test_ws_echo_against_asgiserve() -> None:
    server = ServerProcess(SERVERS["asgiserve"], WS_APP, Opts(ws="auto"), cpu=None)
    try:
        server.wait_ready("/")
        res = wsload.run_echo(server.port, connections=4, duration=1.0, cpu=None, size=16, binary=False)
    finally:
        server.stop()

    assert res.errors == {}, res.errors
    assert res.requests > 0 and res.seconds > 0.9
    assert res.requests / res.seconds > 0  # messages/s
    assert res.deflate == 0  # no extension offered, none negotiated
    assert res.latency_us["p50"] <= res.latency_us["p99"] <= res.latency_us["max"]
    assert res.wrk_cpu > 0  # the client's CPU time came from wait4()

    # The row fits the harness's WebSocket table (scenario registered, ratios computed).
    [scenario] = select(["ws-echo-16b"], ["asgiserve"], is_quick=True)
    rec = cli.scenario_record(scenario)
    rec["rows"] = [{"variant": "asgiserve", "concurrency": 1, "round": 0, **res.as_dict(),
                    "server_cpu": 0.5, "port": server.port, "foreign_load": 0.0}]
    table = "\n".join(ws.echo_table(rec))
    assert "asgiserve (httptools+uvloop)" in table

    # The server is gone: its port refuses connections.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
