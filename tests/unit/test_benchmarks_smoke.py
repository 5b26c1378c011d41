"""Smoke test of the benchmark harness: ``--quick`` runs ONE scenario end to end against asgiserve.

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

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
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
