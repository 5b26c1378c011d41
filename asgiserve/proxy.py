"""Client address and scheme from a trusted reverse proxy's headers.

Only when the direct peer is trusted (``--forwarded-allow-ips``: IPs, CIDRs, ``*``) are
``X-Forwarded-For`` / ``X-Forwarded-Proto`` or, when those are absent, RFC 7239 ``Forwarded``
believed. The client is the *rightmost untrusted* hop: each trusted proxy appends the address
it saw, so everything left of the first untrusted entry (reading from the right) may have been
written by the client itself and is ignored.

Unix-socket peers count as trusted: only processes on this machine that may open the socket
file can connect, and in practice that is the reverse proxy in front of us (which is why one
uses a unix socket). Restrict who can connect with ``-m/--umask`` and directory permissions.

When both header families are present, the X-Forwarded-* pair wins (what nginx, HAProxy,
Traefik and cloud load balancers set); configure the proxy to overwrite or strip the one it
does not use, or a client could supply it.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Optional, Union

from .errors import ConfigError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
CACHE_LIMIT = 4096


def parse_trusted(spec: str) -> tuple[bool, list[Network]]:
    """'127.0.0.1, 10.0.0.0/8, ::1' -> (trust_all, networks). Raises ConfigError."""
    networks: list[Network] = []
    trust_all = False
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "*":
            trust_all = True
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"--forwarded-allow-ips: {item!r} is not an IP address or CIDR network") from None
    return trust_all, networks


def _split_host_port(node: str) -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:80', '[::1]:80', '::1', '_hidden:_port' -> (host, port or 0)."""
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, _, port_text = node.partition(":")
    else:
        host, port_text = node, ""
    port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else 0
    return host, port


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 field value -> one dict per element (lower-cased parameter names)."""
    elements = []
    for element in _split_outside_quotes(value, ","):
        params: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            name, sep, raw = pair.partition("=")
            if sep:
                params[name.strip().lower()] = _unquote(raw)
        elements.append(params)
    return elements


class ProxyHeaders:
    """Rewrites ``scope["client"]`` and ``scope["scheme"]`` in place for trusted peers."""

    def __init__(self, config: Any) -> None:
        self.trust_all, self.networks = parse_trusted(config.forwarded_allow_ips)
        self._cache: dict[str, bool] = {}

    def is_trusted(self, host: str) -> bool:
        if self.trust_all:
            return True
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            trusted = False  # "unknown", obfuscated identifiers and garbage are never proxies
        else:
            trusted = any(address in net for net in self.networks)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[host] = trusted
        return trusted

    def apply(self, scope: dict[str, Any]) -> None:
        xff = xfp = fwd = None
        for name, value in scope["headers"]:
            if name[:2] == b"x-" or name == b"forwarded":  # one cheap test for most headers
                if name == b"x-forwarded-for":
                    xff = value if xff is None else xff + b"," + value
                elif name == b"x-forwarded-proto":
                    xfp = value if xfp is None else xfp + b"," + value
                elif name == b"forwarded":
                    fwd = value if fwd is None else fwd + b"," + value
        if xff is None and xfp is None and fwd is None:
            return
        client = scope.get("client")
        if client is not None and not self.is_trusted(client[0]):
            return
        hops: Optional[list[tuple[str, Optional[str]]]] = None  # (node, proto) per hop, left to right
        if xff is not None:
            hops = [(node.strip(), None) for node in xff.decode("latin-1").split(",")]
        elif fwd is not None:
            hops = [(e.get("for", ""), e.get("proto")) for e in parse_forwarded(fwd.decode("latin-1"))]
        proto: Optional[str] = None
        if hops:
            node, proto = self._client_hop(hops)
            scope["client"] = self._client_tuple(node)
        if xfp is not None:
            proto = xfp.decode("latin-1").split(",")[-1]  # set by the proxy nearest to us
        if proto is not None:
            scheme = HTTP_SCHEMES.get(proto.strip().lower())
            if scheme is not None:
                scope["scheme"] = scheme

    def _client_hop(self, hops: list[tuple[str, Optional[str]]]) -> tuple[str, Optional[str]]:
        for node, proto in reversed(hops):
            host, _ = _split_host_port(node)
            if not self.is_trusted(host):
                return node, proto
        return hops[0]  # every hop is one of ours: the leftmost is the origin

    @staticmethod
    def _client_tuple(node: str) -> Optional[tuple[str, int]]:
        host, port = _split_host_port(node)
        if not host or host.lower() == "unknown":
            return None
        return host, port
