"""A raw WebSocket client for tests: every byte on the wire is under the test's control.

The ``websockets`` library is the client for happy paths; this one exists for the edges it
refuses to produce (unmasked frames, RSV bits, reserved opcodes, oversized or fragmented
control frames, bad close payloads, frame headers without their payload, clients that never
answer a ping...). It is deliberately small and has no dependency beyond the standard library.

Every read has a deadline (``timeout`` seconds, 5 by default): nothing here can hang a test.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CONTROL = (CLOSE, PING, PONG)

HeaderLike = Union[bytes, tuple[bytes, bytes]]


def new_key() -> bytes:
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16))


def accept_for(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept a server must answer to ``key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _header_line(h: HeaderLike) -> bytes:
    if isinstance(h, tuple):
        return h[0] + b": " + h[1] + b"\r\n"
    return h + b"\r\n"


def handshake_request(
    path: bytes = b"/",
    *,
    key: Optional[bytes] = None,
    headers: Iterable[HeaderLike] = (),
    method: bytes = b"GET",
    http_version: bytes = b"HTTP/1.1",
    host: bytes = b"testserver",
    upgrade: Optional[bytes] = b"websocket",
    connection: Optional[bytes] = b"Upgrade",
    version: Optional[bytes] = b"13",
) -> bytes:
    """An opening handshake request. Pass None to leave a header out; ``key=b""`` sends it empty."""
    lines = [method + b" " + path + b" " + http_version + b"\r\n", b"Host: " + host + b"\r\n"]
    if upgrade is not None:
        lines.append(b"Upgrade: " + upgrade + b"\r\n")
    if connection is not None:
        lines.append(b"Connection: " + connection + b"\r\n")
    if key is None:
        key = new_key()
    if key != b"-":  # b"-" means: no Sec-WebSocket-Key header at all
        lines.append(b"Sec-WebSocket-Key: " + key + b"\r\n")
    if version is not None:
        lines.append(b"Sec-WebSocket-Version: " + version + b"\r\n")
    lines.extend(_header_line(h) for h in headers)
    return b"".join(lines) + b"\r\n"


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bool = True,
    mask_key: Optional[bytes] = None,
    length: Optional[int] = None,
    header_only: bool = False,
) -> bytes:
    """One frame as a client would send it (masked unless ``mask=False``).

    ``length`` overrides the announced payload length (the payload itself is sent as given);
    ``header_only`` returns just the header (and masking key), e.g. to announce a huge frame
    without ever sending its payload. Any opcode 0-15 is accepted, reserved ones included.
    """
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0)
    first |= opcode & 0x0F
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, mbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mbit | 127, n)
    if not mask:
        return head if header_only else head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    head += key
    if header_only:
        return head
    return head + apply_mask(payload, key)


def apply_mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def close_payload(code: Optional[int] = 1000, reason: Union[str, bytes] = b"") -> bytes:
    if code is None:
        return b""
    raw = reason.encode() if isinstance(reason, str) else reason
    return struct.pack("!H", code) + raw


def fragments(opcode: int, parts: Sequence[bytes], **kw: object) -> bytes:
    """A message split into frames: ``opcode`` then continuations, FIN on the last."""
    out = []
    for i, part in enumerate(parts):
        out.append(build_frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1, **kw))  # type: ignore[arg-type]
    return b"".join(out)


@dataclass
class Frame:
    fin: bool
    rsv: int  # the three RSV bits as an int 0-7 (RSV1 = 4)
    opcode: int
    payload: bytes
    masked: bool

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def close_code(self) -> Optional[int]:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8")


class EOF(ConnectionError):
    """The server closed the TCP connection (FIN) where a frame or response was expected."""


@dataclass
class HandshakeResponse:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    head: bytes
    body: bytes = b""

    def header(self, name: bytes) -> Optional[bytes]:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_list(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


@dataclass
class WSClient:
    """A raw client on a connected socket. ``timeout`` bounds every read (seconds)."""

    sock: socket.socket
    timeout: float = 5.0
    buffer: bytearray = field(default_factory=bytearray)
    response: Optional[HandshakeResponse] = None

    # -- connecting ---------------------------------------------------------------------

    @classmethod
    def open(cls, host: str, port: int, timeout: float = 5.0) -> "WSClient":
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, timeout)

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        path: bytes = b"/",
        *,
        headers: Iterable[HeaderLike] = (),
        then: bytes = b"",
        timeout: float = 5.0,
        **request: object,
    ) -> "WSClient":
        """Open a WebSocket: handshake (plus ``then``, sent in the same sendall) and expect a 101.

        Checks Sec-WebSocket-Accept; raises AssertionError (with the response) on anything else.
        """
        client = cls.open(host, port, timeout)
        try:
            key = new_key()
            client.sock.sendall(handshake_request(path, key=key, headers=headers, **request) + then)  # type: ignore[arg-type]
            response = client.read_response_head()
            if response.status != 101:
                raise AssertionError(f"expected 101, got {response.status}: {response.head!r}")
            assert response.header(b"sec-websocket-accept") == accept_for(key), response.head
            assert (response.header(b"upgrade") or b"").lower() == b"websocket", response.head
            assert b"upgrade" in (response.header(b"connection") or b"").lower(), response.head
            return client
        except BaseException:
            client.close()
            raise

    def __enter__(self) -> "WSClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- reading ------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no data from the server within the deadline (buffered {bytes(self.buffer[:200])!r})")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError(f"no data from the server within the deadline (buffered {bytes(self.buffer[:200])!r})")
        if not chunk:
            raise EOF(f"server closed the connection (buffered {bytes(self.buffer[:200])!r})")
        self.buffer += chunk

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            self._fill(deadline)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _deadline(self, timeout: Optional[float]) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def read_response_head(self, timeout: Optional[float] = None) -> HandshakeResponse:
        """Read an HTTP response head (the 101, or a refusal); the body of a refusal is not read."""
        deadline = self._deadline(timeout)
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        self.response = HandshakeResponse(int(parts[1]), parts[2] if len(parts) > 2 else b"", headers, head)
        return self.response

    def read_response(self, timeout: Optional[float] = None) -> HandshakeResponse:
        """Read a whole (non-101) HTTP response: head and body (Content-Length, chunked or until EOF)."""
        deadline = self._deadline(timeout)
        response = self.read_response_head(timeout)
        te = (response.header(b"transfer-encoding") or b"").lower()
        if b"chunked" in te:
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    self._fill(deadline)
                line_end = self.buffer.index(b"\r\n")
                size = int(bytes(self.buffer[:line_end]).split(b";")[0], 16)
                del self.buffer[: line_end + 2]
                if size == 0:
                    while True:  # trailers, up to the empty line
                        while b"\r\n" not in self.buffer:
                            self._fill(deadline)
                        line_end = self.buffer.index(b"\r\n")
                        del self.buffer[: line_end + 2]
                        if line_end == 0:
                            break
                    break
                body += self._take(size, deadline)
                self._take(2, deadline)
        elif response.header(b"content-length") is not None:
            body = self._take(int(response.header(b"content-length") or b"0"), deadline)
        else:
            body = self.read_until_eof(timeout)
        response.body = body
        return response

    def read_until_eof(self, timeout: Optional[float] = None) -> bytes:
        deadline = self._deadline(timeout)
        with contextlib.suppress(EOF):
            while True:
                self._fill(deadline)
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def recv_frame(self, timeout: Optional[float] = None) -> Frame:
        """The next frame from the server, whatever it is. Raises EOF, TimeoutError."""
        deadline = self._deadline(timeout)
        b0, b1 = self._take(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2, deadline))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8, deadline))
        masked = bool(b1 & 0x80)
        key = self._take(4, deadline) if masked else b""
        payload = self._take(n, deadline)
        if masked:
            payload = apply_mask(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F, payload, masked)

    def recv_message(self, timeout: Optional[float] = None, answer_pings: bool = True) -> tuple[int, bytes]:
        """The next data message as (opcode, payload), fragments joined; pings answered, pongs skipped.

        A close frame raises AssertionError naming its code and reason.
        """
        deadline = self._deadline(timeout)
        opcode, parts = None, []
        while True:
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == PING:
                if answer_pings:
                    self.send_frame(PONG, frame.payload)
                continue
            if frame.opcode == PONG:
                continue
            if frame.opcode == CLOSE:
                raise AssertionError(f"got a close frame {frame.close_code()} {frame.payload[2:]!r} instead of a message")
            if opcode is None:
                opcode = frame.opcode
            parts.append(frame.payload)
            if frame.fin:
                return opcode, b"".join(parts)

    def recv_text(self, timeout: Optional[float] = None) -> str:
        opcode, payload = self.recv_message(timeout)
        assert opcode == TEXT, f"expected a text message, got opcode {opcode}: {payload[:100]!r}"
        return payload.decode("utf-8")

    def recv_bytes(self, timeout: Optional[float] = None) -> bytes:
        opcode, payload = self.recv_message(timeout)
        assert opcode == BINARY, f"expected a binary message, got opcode {opcode}: {payload[:100]!r}"
        return payload

    def read_close(self, timeout: Optional[float] = None) -> tuple[Optional[int], str]:
        """Skip frames up to the server's close frame; return (code, reason). Code None: empty payload.

        Raises EOF if the server drops TCP without sending a close frame.
        """
        deadline = self._deadline(timeout)
        while True:
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == CLOSE:
                assert not frame.masked, "server frames must not be masked"
                return frame.close_code(), frame.payload[2:].decode("utf-8", "replace")

    def wait_eof(self, timeout: Optional[float] = None) -> str:
        """Read (discarding) until the connection ends: "eof" (clean FIN) or "reset" (RST).

        TimeoutError if the server keeps the connection open past the deadline.
        """
        deadline = self._deadline(timeout)
        self.buffer.clear()
        try:
            while True:
                self._fill(deadline)
                self.buffer.clear()
        except EOF:
            return "eof"
        except ConnectionResetError:
            return "reset"

    # -- writing ------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kw: object) -> None:
        self.send_raw(build_frame(opcode, payload, **kw))  # type: ignore[arg-type]

    def send_text(self, text: str, **kw: object) -> None:
        self.send_frame(TEXT, text.encode(), **kw)

    def send_bytes(self, data: bytes, **kw: object) -> None:
        self.send_frame(BINARY, data, **kw)

    def send_close(self, code: Optional[int] = 1000, reason: Union[str, bytes] = b"", **kw: object) -> None:
        self.send_frame(CLOSE, close_payload(code, reason), **kw)

    def close_handshake(self, code: int = 1000, reason: str = "", timeout: Optional[float] = None) -> tuple[Optional[int], str]:
        """Send a close frame and read the server's answer: (code, reason)."""
        self.send_close(code, reason)
        return self.read_close(timeout)
