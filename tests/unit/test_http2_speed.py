"""The shortcuts asgiserve/http2 takes around h2 and hpack for speed: each must leave behaviour unchanged."""
from __future__ import annotations

import logging

import pytest

pytest.importorskip("h2")

import hpack.hpack  # noqa: E402

from asgiserve.http2 import connection  # noqa: E402


def test_hpack_debug_lines_are_dropped_other_levels_kept(caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(hpack.hpack.log, connection._QuietDebug)
    with caplog.at_level(logging.DEBUG, logger="hpack.hpack"):
        hpack.hpack.log.debug("dropped %s", 1)
        hpack.hpack.log.warning("kept %s", 2)
    assert [r.getMessage() for r in caplog.records] == ["kept 2"]
    assert connection._QuietLog().debug("%s", 1, exc_info=True) == ""


def test_hpack_logger_left_alone_when_debug_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    real = logging.getLogger("hpack.hpack")
    monkeypatch.setattr(hpack.hpack, "log", real)
    monkeypatch.setattr(real, "level", logging.DEBUG)
    real.manager._clear_cache()
    try:
        connection._quiet_hpack()
        assert hpack.hpack.log is real
    finally:
        monkeypatch.undo()
        real.manager._clear_cache()
