"""WebSocket upgrade detection in the parsers and the handshake rules, without sockets.

Both backends must stop at the same byte: everything after the handshake's blank line is
handed over untouched, however the input was split.
"""
from __future__ import annotations

import random
from typing import Any

import pytest

from asgiserve.config import Config
from asgiserve.http.events import MessageEnd, ParseError, RequestHead, Upgrade
from asgiserve.http.parser import make_parser
from asgiserve.ws.handshake import HandshakeError, accept_key, accept_response, check_request

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
FRAME = b"\x81\x85\x01\x02\x03\x04" + bytes(b ^ m for b, m in zip(b"hello", b"\x01\x02\x03\x04\x01"))


@pytest.fixture(params=["httptools", "h11"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def feed_split(parser: Any, data: bytes, cuts: list[int]) -> list[Any]:
    events: list[Any] = []
    last = 0
    for cut in sorted(cuts) + [len(data)]:
        events += parser.feed(data[last:cut])
        last = cut
    return events


def handed_over(events: list[Any]) -> bytes:
    return b"".join(e.data for e in events if type(e) is Upgrade)


def test_websocket_head_is_followed_by_the_bytes_after_it(kind: str) -> None:
    parser = make_parser(kind, Config(), upgrades=True)
    events = parser.feed(HANDSHAKE + FRAME)
    assert [type(e) for e in events] == [RequestHead, Upgrade]
    assert events[0].upgrade and events[0].target == b"/chat?room=1"
    assert events[1].data == FRAME
    assert parser.feed(b"more") == [] and parser.feed_eof() == []  # the rest is not HTTP


@pytest.mark.parametrize("seed", range(20))
def test_split_anywhere_hands_over_the_same_bytes(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + HANDSHAKE + FRAME  # pipelined behind a request
    cuts = rng.sample(range(1, len(data)), rng.randint(1, 6))
    events = feed_split(make_parser(kind, Config(), upgrades=True), data, cuts)
    kinds = [type(e) for e in events if type(e) is not Upgrade]
    assert kinds == [RequestHead, MessageEnd, RequestHead]
    # Bytes after the head arrive in the Upgrade event; bytes of later feeds are not parsed.
    tail = handed_over(events)
    assert FRAME.startswith(tail)


@pytest.mark.parametrize(
    "connection, upgrade",
    [(b"keep-alive, Upgrade", b"websocket"), (b"UPGRADE", b"WebSocket"), (b"upgrade", b"h2c, websocket")],
)
def test_token_lists_in_any_case(kind: str, connection: bytes, upgrade: bytes) -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: %s\r\nUpgrade: %s\r\n\r\n" % (connection, upgrade)
    events = make_parser(kind, Config(), upgrades=True).feed(head + b"x")
    assert [type(e) for e in events] == [RequestHead, Upgrade] and events[1].data == b"x"


@pytest.mark.parametrize(
    "fields",
    [b"Upgrade: websocket\r\n", b"Connection: upgrade\r\nUpgrade: h2c\r\n", b"Connection: upgraded\r\nUpgrade: websocket\r\n"],
)
def test_not_a_websocket_request_is_plain_http(kind: str, fields: bytes) -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n"
    events = make_parser(kind, Config(), upgrades=True).feed(head + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [type(e) for e in events] == [RequestHead, MessageEnd, RequestHead, MessageEnd]
    assert not events[0].upgrade


def test_without_upgrades_a_websocket_request_is_plain_http(kind: str) -> None:
    events = make_parser(kind, Config()).feed(HANDSHAKE + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [type(e) for e in events] == [RequestHead, MessageEnd, RequestHead, MessageEnd]
    assert events[0].upgrade  # marked, but the parser went on


def test_invalid_head_with_upgrade_is_still_a_parse_error(kind: str) -> None:
    events = make_parser(kind, Config(), upgrades=True).feed(
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"  # no Host
    )
    assert [type(e) for e in events] == [ParseError] and events[0].status == 400


def head_of(data: bytes) -> RequestHead:
    event = make_parser("h11", Config(), upgrades=True).feed(data)[0]
    assert type(event) is RequestHead
    return event


@pytest.mark.parametrize(
    "old, new, status",
    [
        (b"GET /chat", b"POST /chat", 400),
        (b"HTTP/1.1\r\nHost", b"HTTP/1.0\r\nHost", 400),
        (b"Sec-WebSocket-Key: " + KEY + b"\r\n", b"", 400),
        (KEY, b"dGhlIHNhbXBsZSBub25jZQ", 400),  # not padded base64
        (KEY, b"c2hvcnQ=", 400),  # base64 of 5 bytes
        (b"Sec-WebSocket-Version: 13\r\n", b"", 400),
        (b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8", 426),
    ],
)
def test_invalid_handshakes(old: bytes, new: bytes, status: int) -> None:
    with pytest.raises(HandshakeError) as info:
        check_request(head_of(HANDSHAKE.replace(old, new)))
    assert info.value.status == status
    if status == 426:
        assert info.value.headers == b"sec-websocket-version: 13\r\n"


def test_rfc_6455_accept_key_and_response() -> None:
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3's example
    handshake = check_request(head_of(HANDSHAKE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: a, b\r\n\r\n")))
    assert handshake.subprotocols == ["a", "b"]
    response, extra = accept_response(handshake, b"server: x\r\n", None, "b", [(b"x-a", b"1")])
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\nserver: x\r\n")
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert b"sec-websocket-protocol: b\r\n" in response and b"x-a: 1\r\n" in response
    assert response.endswith(b"\r\n\r\n") and extra == [(b"x-a", b"1")]
    with pytest.raises(RuntimeError, match="not offered"):
        accept_response(handshake, b"", None, "c", None)
    with pytest.raises(RuntimeError, match="may not set"):
        accept_response(handshake, b"", None, None, [(b"sec-websocket-accept", b"forged")])
