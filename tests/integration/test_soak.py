"""A short run of ``benchmarks/soak.py``: every byte of every response checked while the server is
paused at random. Longer runs found a duplicated batch in the WSGI bridge and connections that
stopped reading; this keeps a few seconds of it in CI, per parser and interface. In the ASGI modes
WebSocket clients run alongside (echoes of every size, bursts read slowly, the close handshake,
resets), every message verified too."""
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
    ws = re.search(r"; ws (\d+) connections .*?, (\d+) messages verified, (\d+) closed 1012, (\d+) failed", proc.stdout)
    if interface == "wsgi":
        assert ws is None, proc.stdout  # WSGI apps get no WebSockets: no WebSocket clients
        return
    assert ws is not None, proc.stdout
    connections, messages, restarts, failed = map(int, ws.groups())
    assert connections >= 4 and messages > 100 and restarts == 0 and failed == 0, proc.stdout
