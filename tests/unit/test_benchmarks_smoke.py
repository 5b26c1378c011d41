"""Smoke test of the benchmark harness: ``--quick`` runs ONE scenario end to end against asgiserve
(an HTTP/1.1 one with wrk, and the HTTP/2 one with h2load).

The harness is a tool, not a test: nothing here looks at how fast anything is. It checks that the
harness starts asgiserve (httptools; one parser is enough because the parsers are not under test here),
drives it with wrk, writes its JSON, Markdown and (with matplotlib) plot, and stops the server it started.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]



@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed (apt-get install -y wrk); the harness needs it")
@pytest.mark.timeout(90)
def test_quick_plaintext_against_asgiserve(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--scenario", "plaintext", "--servers", "asgiserve",
         "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=55,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "plaintext" in proc.stdout and "asgiserve" in proc.stdout  # the progress line was printed

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["failures"] == {}
    [scenario] = results["scenarios"]
    assert scenario["name"] == "plaintext"
    assert [v["id"] for v in scenario["variants"]] == ["asgiserve"]
    [row] = scenario["rows"]  # --quick: one round, one concurrency
    assert row["variant"] == "asgiserve"
    assert row["requests"] > 0
    assert row["errors"] == {}, row["errors"]
    assert row["server_cpu"] > 0  # CPU accounting found the server process

    table = (tmp_path / "results.md").read_text()
    assert "asgiserve (httptools+uvloop)" in table
    plot = tmp_path / "throughput-asgi.png"
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra; the test extra lacks it
        assert plot.stat().st_size > 0
    else:
        assert not plot.exists() and "plots skipped" in proc.stdout

    # The server the harness started is gone: its port refuses connections.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", row["port"]), timeout=2).close()


# -- HTTP/2 (h2load) ---------------------------------------------------------------------------------------

H2LOAD_OUT = """finished in 3.00s, 1348.00 req/s, 138.24KB/s
requests: 4092 total, 4144 started, 4092 done, 4044 succeeded, 48 failed, 48 errored, 0 timeout
status codes: 4044 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 414.73KB (424685) total, 256.70KB (262860) headers (space savings 30.85%), 51.34KB (52572) data
"""


def test_h2load_output_parsed() -> None:
    """h2load's summary and per-request log: counts, percentiles, and when the responses stopped."""
    from benchmarks import h2load

    start = 1_796_385_215_000_000
    log = [f"{start + i * 100}\t200\t{1000 + i}" for i in range(100)] + [f"{start + 10_000}\t-1\t5"]
    d = h2load.parse(H2LOAD_OUT, log, 3.0)
    assert d["counts"]["succeeded"] == 4044 and d["counts"]["failed"] == 48 and d["counts"]["started"] == 4144
    assert d["bytes"] == 424685
    assert d["latency_us"]["p50"] == 1050 and d["latency_us"]["max"] == 1099
    assert 0.01 < d["last_response_s"] < 0.02  # responses stopped 10 ms in: far before the 3 s window ended
    res = h2load.H2Result(requests=4044, seconds=3.0, bytes=0, errors={}, latency_us=d["latency_us"], wrk_cpu=0.1,
                          wall=3.0, done=4092, last_response_s=d["last_response_s"])
    assert res.stalled and res.as_dict()["stalled"]
    with pytest.raises(ValueError):
        h2load.parse("No protocol negotiated. Aborted.\n", [], 3.0)


@pytest.mark.skipif(shutil.which("h2load") is None,
                    reason="h2load is not installed (apt-get install -y nghttp2-client)")
@pytest.mark.timeout(60)
def test_quick_h2_against_asgiserve(tmp_path: Path) -> None:
    """The HTTP/2 scenario end to end (about 3 s): asgiserve --http2 answers the h2c probe, h2load's run
    is parsed into a row without failures, the table is written and the server is stopped."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--scenario", "h2-plaintext-64x10", "--servers", "asgiserve",
         "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=45,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["failures"] == {}
    [scenario] = results["scenarios"]
    [row] = scenario["rows"]
    assert row["client"] == "h2load" and row["requests"] > 0 and row["errors"] == {}, row
    assert not row["stalled"] and row["server_cpu"] > 0
    assert "HTTP/2 plaintext (h2c), 64 connections x 10 streams" in (tmp_path / "results.md").read_text()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", row["port"]), timeout=2).close()
