"""The no-I/O cost driver (benchmarks/costs.py) serves real responses and reports a time.

Nothing here judges speed: the driver is a profiling tool, and this only keeps it working.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import costs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shape", ["wrk", "browser"])
def test_the_driver_runs_on_each_parser(http_impl: str, shape: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.costs", "--http", http_impl, "--request", shape,
                           "--requests", "300"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.fullmatch(rf"\d+\.\d\d µs per request \({http_impl}, {shape} request, no I/O\)\n", proc.stdout), proc.stdout


def test_the_driver_refuses_a_response_that_is_not_the_plaintext_one() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = costs._Transport(loop, None, 2, loop.create_future())
        with pytest.raises(AssertionError, match="not the plaintext response"):
            transport.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\noops")
    finally:
        loop.close()
