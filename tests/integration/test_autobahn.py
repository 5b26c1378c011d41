"""Autobahn|Testsuite WebSocket conformance (kosoku's fuzzing client) against the real asgiserve, both parsers.

A bounded subset for CI (260 cases, about 16 s per parser on a 2-core machine): every case of sections 1-7
and 10 (framing, pings/pongs, reserved bits, opcodes, fragmentation, UTF-8, close handling,
auto-fragmentation; Autobahn has no section 8 or 11) and a sample of 12/13 (permessage-deflate: a few sizes
and fragmentations of 12.x, the first case of each negotiation variant 13.1-13.7). Section 9 (up to 16 MiB
messages) and the rest of 12/13 are the full run, ``python -m benchmarks.autobahn``
(docs/websockets-conformance.md). No case may be FAILED; NON-STRICT and INFORMATIONAL are allowed, as in
Autobahn's own report. The server is a subprocess serving benchmarks/apps/ws_echo.py on 127.0.0.1.
"""
from __future__ import annotations

import pytest

# Skipped only when kosoku cannot be imported (not installed, or no wheel works on this platform).
pytest.importorskip("kosoku", reason="kosoku (the Autobahn|Testsuite runner, in the 'test' extra) is not importable",
                    exc_type=ImportError)

from benchmarks.autobahn import counts, explain, failed, run_suite, table_markdown  # noqa: E402

# Autobahn has no section 8 or 11 (no case ids start with them): "1-8 and 10" is 1-7 and 10.
SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "10")
CI_CASES = [f"{n}.*" for n in SECTIONS] + [
    "12.1.1", "12.1.4", "12.1.11", "12.2.3", "12.3.5", "12.5.16",  # sizes 16 B .. 128 KiB, fragmented 256 B .. 1 KiB
    "13.1.1", "13.2.1", "13.3.1", "13.4.1", "13.5.1", "13.6.1", "13.7.1",  # every no_context_takeover/window-bits pair
]
RUN_TIMEOUT = 90.0  # the subset takes well under 60 s per parser; this only bounds a hang


@pytest.mark.timeout(RUN_TIMEOUT + 30)
@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_autobahn_subset(http: str) -> None:
    run = run_suite("asgiserve", http, CI_CASES, concurrency=2, timeout=RUN_TIMEOUT)
    assert not run.timed_out, f"the Autobahn subset did not finish in {RUN_TIMEOUT:.0f} s"
    assert run.results, f"no case ran:\n{run.server_log}"
    assert {r.case_id.split(".")[0] for r in run.results} >= set(SECTIONS)
    bad = failed(run.results)
    assert not bad, (
        f"{len(bad)} Autobahn case(s) FAILED on --http {http}: {' '.join(r.case_id for r in bad)}\n\n"
        + "\n".join(explain(r) for r in bad)
        + f"\n\n{table_markdown(counts(run.results))}\n\nserver output:\n{run.server_log}"
    )
