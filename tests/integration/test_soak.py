"""A short run of ``benchmarks/soak.py``: every byte of every response checked while the server is
paused at random. Longer runs found a duplicated batch in the WSGI bridge and connections that
stopped reading; this keeps a few seconds of it in CI, per parser and interface."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
@pytest.mark.parametrize("http_impl", ["httptools", "h11"])
def test_soak(http_impl: str, interface: str) -> None:
    mode = f"{http_impl}-{interface}"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--seconds", "3", "--modes", mode],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=80,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(rf"{mode} +(\d+) verified, 0 failed", proc.stdout)
    assert found and int(found.group(1)) > 50, proc.stdout
