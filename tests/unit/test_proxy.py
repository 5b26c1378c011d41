"""Proxy headers: who is trusted, rightmost-untrusted-hop, X-Forwarded-* and RFC 7239 Forwarded."""
from __future__ import annotations

from typing import Any, Optional

import pytest

from asgiserve.config import Config
from asgiserve.errors import ConfigError
from asgiserve.proxy import ProxyHeaders, parse_forwarded


def apply(
    headers: list[tuple[bytes, bytes]],
    client: Optional[tuple[str, int]] = ("127.0.0.1", 4000),
    trusted: str = "127.0.0.1",
) -> dict[str, Any]:
    scope = {"type": "http", "scheme": "http", "client": client, "headers": headers}
    ProxyHeaders(Config(forwarded_allow_ips=trusted)).apply(scope)
    return scope


def test_no_proxy_headers_leaves_scope_alone() -> None:
    scope = apply([(b"host", b"x"), (b"x-request-id", b"1")])
    assert scope["client"] == ("127.0.0.1", 4000) and scope["scheme"] == "http"


def test_untrusted_peer_is_ignored() -> None:
    scope = apply([(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")], client=("9.9.9.9", 1))
    assert scope["client"] == ("9.9.9.9", 1) and scope["scheme"] == "http"


def test_x_forwarded_for_and_proto_from_trusted_peer() -> None:
    scope = apply([(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")])
    assert scope["client"] == ("1.2.3.4", 0) and scope["scheme"] == "https"


@pytest.mark.parametrize(
    "proto, scheme",
    [(b"https", "https"), (b"HTTPS", "https"), (b"wss", "https"), (b"ws", "http"), (b" http ", "http"),
     (b"javascript", "http"), (b"", "http"), (b"ftp", "http")],
)
def test_only_known_schemes_are_taken(proto: bytes, scheme: str) -> None:
    assert apply([(b"x-forwarded-proto", proto)])["scheme"] == scheme


def test_proto_list_uses_the_nearest_proxys_value() -> None:
    assert apply([(b"x-forwarded-proto", b"https, http")])["scheme"] == "http"


def test_rightmost_untrusted_hop_wins() -> None:
    # The client wrote "6.6.6.6" itself; the trusted proxies appended the real hops.
    headers = [(b"x-forwarded-for", b"6.6.6.6, 1.1.1.1, 10.0.0.2, 10.0.0.1")]
    scope = apply(headers, trusted="127.0.0.1, 10.0.0.0/8")
    assert scope["client"] == ("1.1.1.1", 0)


def test_every_hop_trusted_takes_the_leftmost() -> None:
    scope = apply([(b"x-forwarded-for", b"10.0.0.3, 10.0.0.2")], trusted="127.0.0.1,10.0.0.0/8")
    assert scope["client"] == ("10.0.0.3", 0)


def test_star_trusts_everyone_and_takes_the_origin() -> None:
    scope = apply([(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2")], client=("8.8.8.8", 1), trusted="*")
    assert scope["client"] == ("1.1.1.1", 0)


def test_repeated_header_lines_are_joined() -> None:
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"1.1.1.1")]
    assert apply(headers)["client"] == ("1.1.1.1", 0)


@pytest.mark.parametrize(
    "value, client",
    [
        (b"1.2.3.4:5678", ("1.2.3.4", 5678)),
        (b"[2001:db8::1]:80", ("2001:db8::1", 80)),
        (b"2001:db8::1", ("2001:db8::1", 0)),
        (b"unknown", None),
        (b" 1.2.3.4 ", ("1.2.3.4", 0)),
    ],
)
def test_x_forwarded_for_node_forms(value: bytes, client: Any) -> None:
    assert apply([(b"x-forwarded-for", value)])["client"] == client


def test_unix_socket_peer_is_trusted() -> None:
    scope = apply([(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")], client=None)
    assert scope["client"] == ("1.2.3.4", 0) and scope["scheme"] == "https"


def test_ipv6_networks() -> None:
    scope = apply([(b"x-forwarded-for", b"1.2.3.4")], client=("::1", 3), trusted="::1/128")
    assert scope["client"] == ("1.2.3.4", 0)
    scope = apply([(b"x-forwarded-for", b"1.2.3.4")], client=("fd00::5", 3), trusted="fd00::/8")
    assert scope["client"] == ("1.2.3.4", 0)


# -- RFC 7239 Forwarded -------------------------------------------------------------------
def test_parse_forwarded() -> None:
    value = 'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", for="_x;y,z";proto=https'
    assert parse_forwarded(value) == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
        {"for": "[2001:db8:cafe::17]:4711"},
        {"for": "_x;y,z", "proto": "https"},
    ]


@pytest.mark.parametrize(
    "value, client, scheme",
    [
        (b"for=192.0.2.60;proto=https", ("192.0.2.60", 0), "https"),
        (b'for="[2001:db8:cafe::17]:4711";proto=http', ("2001:db8:cafe::17", 4711), "http"),
        (b'for="192.0.2.43:47011"', ("192.0.2.43", 47011), "http"),
        (b"for=_hidden;proto=https", ("_hidden", 0), "https"),
        (b'for="_hidden:_port"', ("_hidden", 0), "http"),
        (b"for=unknown;proto=https", None, "https"),
        (b"proto=https", None, "https"),
        (b"for=1.1.1.1;proto=https, for=10.0.0.1;proto=http", ("1.1.1.1", 0), "https"),
        (b"for=6.6.6.6;proto=http, for=1.1.1.1;proto=https", ("1.1.1.1", 0), "https"),
        (b"FOR=1.2.3.4;PROTO=HTTPS", ("1.2.3.4", 0), "https"),
        (b"for=1.2.3.4;proto=gopher", ("1.2.3.4", 0), "http"),
    ],
)
def test_forwarded(value: bytes, client: Any, scheme: str) -> None:
    scope = apply([(b"forwarded", value)], trusted="127.0.0.1,10.0.0.0/8")
    assert scope["client"] == client and scope["scheme"] == scheme


def test_forwarded_untrusted_peer_ignored() -> None:
    scope = apply([(b"forwarded", b"for=1.2.3.4;proto=https")], client=("5.5.5.5", 1))
    assert scope["client"] == ("5.5.5.5", 1) and scope["scheme"] == "http"


def test_x_forwarded_headers_win_over_forwarded() -> None:
    headers = [(b"forwarded", b"for=6.6.6.6;proto=http"), (b"x-forwarded-for", b"1.1.1.1"),
               (b"x-forwarded-proto", b"https")]
    scope = apply(headers)
    assert scope["client"] == ("1.1.1.1", 0) and scope["scheme"] == "https"


# -- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["not-an-ip", "10.0.0.0/33", "1.2.3.4,,bogus"])
def test_invalid_allow_list(spec: str) -> None:
    with pytest.raises(ConfigError, match="--forwarded-allow-ips"):
        ProxyHeaders(Config(forwarded_allow_ips=spec))


def test_is_trusted_and_cache() -> None:
    proxy = ProxyHeaders(Config(forwarded_allow_ips="127.0.0.1, 10.0.0.0/8 , ::1"))
    assert proxy.is_trusted("127.0.0.1") and proxy.is_trusted("10.1.2.3") and proxy.is_trusted("::1")
    assert not proxy.is_trusted("127.0.0.2") and not proxy.is_trusted("garbage")
    assert proxy.is_trusted("10.1.2.3")  # cached answer is the same
    for i in range(5000):
        proxy.is_trusted(f"192.168.{i // 256}.{i % 256}")
    assert len(proxy._cache) <= 4096
