"""Every corpus case x both parser backends x every way of splitting the bytes.

The expected events (bodies joined per message) and error status must be identical for the
whole buffer, byte by byte, and five seeded random splits, on httptools and on h11. A
disagreement is fixed in the shared validation (asgiserve/http/framing.py, limits.py), never
by special-casing a case here.
"""
from __future__ import annotations

import random
from typing import Any

import pytest

from asgiserve.config import Config
from asgiserve.http.parser import make_parser
from tests.corpus.cases import ALL, INVALID, VALID, Case, normalize

PARSERS = ["httptools", "h11"]
SPLITS = ["whole", "bytes"] + [f"random{seed}" for seed in range(5)]


def pieces(raw: bytes, split: str) -> list[bytes]:
    if split == "whole":
        return [raw]
    if split == "bytes":
        return [raw[i : i + 1] for i in range(len(raw))]
    rnd = random.Random(int(split[len("random"):]) * 7919 + len(raw))
    cuts = sorted(rnd.sample(range(1, len(raw)), min(len(raw) - 1, rnd.randint(1, 12))))
    return [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])]


def run(kind: str, case: Case, split: str) -> list[Any]:
    parser = make_parser(kind, Config(**case.config))
    events: list[Any] = []
    failed_at = None
    for index, piece in enumerate(pieces(case.raw, split)):
        out = parser.feed(piece)
        if failed_at is not None:
            assert out == [], "events after a ParseError"
        events += out
        if failed_at is None and any(type(e).__name__ == "ParseError" for e in out):
            failed_at = index
            assert type(out[-1]).__name__ == "ParseError", "ParseError must be the last event"
    tail = parser.feed_eof()
    if failed_at is not None:
        assert tail == [], "events after a ParseError"
    events += tail
    if any(type(e).__name__ == "ParseError" for e in events):  # dead for good
        assert parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == [] and parser.feed_eof() == []
    return normalize(events)


def test_corpus_size() -> None:
    assert len(VALID) >= 40 and len(INVALID) >= 50
    names = [case.name for case in ALL]
    assert len(names) == len(set(names)), "duplicate case names"
    assert all(case.status is None for case in VALID)
    assert all(case.status is not None for case in INVALID)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("case", ALL, ids=[case.name for case in ALL])
def test_case(case: Case, kind: str, split: str) -> None:
    assert run(kind, case, split) == case.expect
