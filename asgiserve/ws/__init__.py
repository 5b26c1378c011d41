"""WebSockets (RFC 6455) for ASGI apps: the ``websocket`` scope after an HTTP/1.1 upgrade.

The HTTP core only recognises a WebSocket request (``RequestHead.upgrade``) and calls
``start`` with the bytes that followed the head; everything after that lives here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from websockets.extensions import ServerExtensionFactory

if TYPE_CHECKING:
    from ..config import Config
    from ..http.events import RequestHead
    from ..http.protocol import HttpProtocol
    from .connection import WebSocket


class WebSocketSettings:
    """The --ws-* options, read once per server."""

    def __init__(self, config: "Config") -> None:
        from .deflate import deflate_factory

        self.max_size: Optional[int] = config.ws_max_size
        self.max_queue = config.ws_max_queue
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.extension_factories: list[ServerExtensionFactory] = (
            [deflate_factory()] if config.ws_per_message_deflate else []
        )


def start(proto: "HttpProtocol", head: "RequestHead", data: bytes, settings: WebSocketSettings) -> Optional["WebSocket"]:
    """Answer an invalid handshake, or start the app on a WebSocket scope; returns the WebSocket."""
    from .connection import WebSocket
    from .handshake import HandshakeError, check_request

    try:
        handshake = check_request(head)
    except HandshakeError as exc:
        proto.send_error(exc.status, exc.reason, exc.headers)
        return None
    ws = WebSocket(proto, head, handshake, settings)
    proto.ws = ws
    ws.start(data)
    return ws


def enabled(config: "Config", interface: str) -> bool:
    """Whether upgrade requests become WebSockets: on unless --ws none, or a WSGI app."""
    return config.ws != "none" and interface != "wsgi"


__all__ = ["WebSocketSettings", "start", "enabled"]
