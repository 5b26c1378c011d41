"""The WebSocket opening handshake (RFC 6455 4.2), as pure functions of the request head.

``check_request`` runs before the app is called: a request that is not a valid handshake is
answered by the server (400, or 426 for a version other than 13) and never becomes a
``websocket`` scope. ``accept_response`` builds the 101 once the app accepts, with the
subprotocol the app chose and the extensions negotiated here.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Optional, Sequence

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions import Extension, ServerExtensionFactory
from websockets.headers import build_extension, parse_extension, parse_subprotocol

from ..http.events import RequestHead
from ..http.response import ResponseError, prepare_head

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Fields the server writes itself in a 101; an app's accept headers may not repeat them.
RESERVED = frozenset(
    (b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions", b"content-length",
     b"transfer-encoding")
)


class HandshakeError(Exception):
    """Not a valid opening handshake: answer ``status`` (with ``headers``) and close."""

    def __init__(self, status: int, reason: str, headers: bytes = b"") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class Handshake:
    """What a valid handshake request carries."""

    __slots__ = ("key", "subprotocols", "extensions")

    def __init__(self, key: bytes, subprotocols: list[str], extensions: list[Any]) -> None:
        self.key = key
        self.subprotocols = subprotocols
        self.extensions = extensions


def check_request(head: RequestHead) -> Handshake:
    """Validate a head marked ``upgrade``. Raises HandshakeError."""
    if head.method != b"GET":
        raise HandshakeError(400, "WebSocket handshake must be a GET request")
    if head.http_version != "1.1":
        raise HandshakeError(400, "WebSocket handshake needs HTTP/1.1")
    keys = []
    versions = []
    protocols = []
    offers = []
    for name, value in head.headers:
        if name[:14] != b"sec-websocket-":
            continue
        if name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            versions.append(value)
        elif name == b"sec-websocket-protocol":
            protocols.append(value)
        elif name == b"sec-websocket-extensions":
            offers.append(value)
    if len(versions) != 1:
        raise HandshakeError(400, "WebSocket handshake needs one Sec-WebSocket-Version field")
    if versions[0] != b"13":
        raise HandshakeError(426, "Unsupported WebSocket version", b"sec-websocket-version: 13\r\n")
    if len(keys) != 1:
        raise HandshakeError(400, "WebSocket handshake needs one Sec-WebSocket-Key field")
    try:
        raw = base64.b64decode(keys[0], validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, "Invalid Sec-WebSocket-Key")
    try:
        subprotocols: list[str] = []
        for value in protocols:
            subprotocols.extend(parse_subprotocol(value.decode("latin-1")))
        extensions = []
        for value in offers:
            extensions.extend(parse_extension(value.decode("latin-1")))
    except InvalidHeader as exc:
        raise HandshakeError(400, f"Invalid WebSocket handshake field: {exc}") from None
    return Handshake(keys[0], subprotocols, extensions)


def negotiate(
    offers: list[Any], factories: Sequence[ServerExtensionFactory]
) -> tuple[Optional[bytes], list[Extension]]:
    """Pick the extensions to use from the client's offers, in the client's order (RFC 6455 9.1).

    Returns the Sec-WebSocket-Extensions value to answer (None: none) and the extensions.
    """
    accepted: list[Extension] = []
    params: list[Any] = []
    for name, request_params in offers:
        for factory in factories:
            if factory.name != name:
                continue
            try:
                response_params, extension = factory.process_request_params(request_params, accepted)
            except NegotiationError:
                continue
            params.append((name, response_params))
            accepted.append(extension)
            break
    if not params:
        return None, []
    return build_extension(params).encode("latin-1"), accepted


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def accept_response(
    handshake: Handshake, default_headers: bytes, extensions_value: Optional[bytes],
    subprotocol: Optional[str], app_headers: Any,
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The 101 response bytes, and the headers the app added (for the access log).

    Raises RuntimeError for an accept message the server cannot honour.
    """
    parts = [
        b"HTTP/1.1 101 Switching Protocols\r\n", default_headers,
        b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ", accept_key(handshake.key), b"\r\n",
    ]
    if extensions_value is not None:
        parts += (b"sec-websocket-extensions: ", extensions_value, b"\r\n")
    extra: list[tuple[bytes, bytes]] = []
    if app_headers:
        try:
            head = prepare_head(200, app_headers)
        except (ResponseError, TypeError, ValueError) as exc:
            raise RuntimeError(f"Invalid websocket.accept headers: {exc}") from None
        extra = head.headers
        for name, _ in extra:
            lname = name.lower()
            if lname in RESERVED:
                raise RuntimeError(f"websocket.accept headers may not set {name.decode('latin-1')!r}")
            if lname == b"sec-websocket-protocol" and subprotocol is not None:
                raise RuntimeError("websocket.accept sets both 'subprotocol' and a Sec-WebSocket-Protocol header")
        parts.append(head.header_bytes)
    if subprotocol is not None:
        if not isinstance(subprotocol, str):
            raise RuntimeError(f"websocket.accept 'subprotocol' must be a str, got {type(subprotocol).__name__}")
        if subprotocol not in handshake.subprotocols:
            # RFC 6455 4.2.2: the server picks one of the client's; a client must fail otherwise.
            raise RuntimeError(f"websocket.accept subprotocol {subprotocol!r} was not offered by the client")
        parts += (b"sec-websocket-protocol: ", subprotocol.encode("latin-1"), b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), extra
