"""The no-I/O WebSocket cost driver (benchmarks/ws_costs.py) echoes real messages and reports a time.

Nothing here judges speed: the driver is a profiling tool, and this only keeps it working.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("server,shape", [
    ("asgiserve", ["--size", "16", "--text"]),
    ("asgiserve", ["--size", "70000", "--split", "30000"]),
    ("uvicorn", ["--size", "16"]),
])
def test_the_driver_echoes(http_impl: str, server: str, shape: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.ws_costs", "--server", server, "--http", http_impl,
                           *shape, "--messages", "200"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.fullmatch(rf"\d+\.\d\d µs per message \({server}, .*, no I/O\)\n", proc.stdout), proc.stdout
