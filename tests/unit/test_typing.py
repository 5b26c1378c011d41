"""The package stays fully annotated: mypy --strict over asgiserve/ (settings in pyproject.toml).

Checked for the running Python and for the oldest one supported (requires-python), whose stubs
reject what it lacks (e.g. ``create_task(context=...)`` is 3.11+).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OLDEST = re.search(r'requires-python = ">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)  # type: ignore[union-attr]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["running", OLDEST])
def test_mypy_strict_is_clean(tmp_path: Path, target: str) -> None:
    pytest.importorskip("mypy", reason="mypy is part of the [test] extra")
    version = [] if target == "running" else ["--python-version", target]
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), *version],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
