"""HTTP/2 (RFC 9113) for ASGI and WSGI apps, with --http2: h2 over TLS (ALPN), h2c with prior knowledge.

The HTTP/1.1 protocol object owns every accepted connection. It hands one over here when TLS
negotiated ``h2`` (ALPN), or when a cleartext connection's first bytes are the HTTP/2
connection preface, so one port serves both versions. Frames and HPACK are h2's (python-hyper);
each stream runs the same ``asgi.http.RequestCycle`` as an HTTP/1.1 request (docs/http2.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config
    from ..http.protocol import HttpProtocol
    from .connection import H2Connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2Settings:
    """The --http2-* options, read once per server."""

    def __init__(self, config: "Config") -> None:
        self.max_concurrent_streams = config.http2_max_concurrent_streams
        self.max_header_list_size = config.http2_max_header_list_size
        self.header_table_size = config.http2_header_table_size
        self.max_frame_size = config.http2_max_frame_size
        self.initial_window_size = config.http2_initial_window_size
        self.connection_window_size = config.http2_connection_window_size
        self.stall_timeout = config.http2_stall_timeout
        # h2c with prior knowledge on cleartext listeners, unless gunicorn's http2_cleartext says
        # off (or upgrade: Upgrade: h2c is not supported, so no h2c at all).
        self.cleartext = config.http2_cleartext not in ("off", "upgrade")


def start(proto: "HttpProtocol", data: bytes, settings: H2Settings) -> "H2Connection":
    """Speak HTTP/2 on ``proto``'s connection from now on; ``data`` is the input so far
    (the preface, for h2c with prior knowledge)."""
    from .connection import H2Connection

    conn = H2Connection(proto, settings)
    proto.h2 = conn
    proto.fresh = False
    proto.state.waiting_changed()
    conn.start(data)
    return conn


__all__ = ["H2Settings", "PREFACE", "start"]
