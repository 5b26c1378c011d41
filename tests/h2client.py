"""A blocking raw HTTP/2 client over a socket, driven frame by frame with h2 (client side), for
the cases httpx cannot express: floods, windows that never open, resets, partial prefaces."""
from __future__ import annotations

import contextlib
import socket
import time
from typing import Any, Optional

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame


class H2Client:
    def __init__(self, host: str, port: int, timeout: float = 5.0, settings: Optional[dict[int, int]] = None,
                 window: Optional[int] = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        # h2 treats a connection as closed from the moment a GOAWAY is received, and would refuse
        # the frames of the streams the server still answers (RFC 9113 6.8 lets them finish).
        machine = self.conn.state_machine
        transitions = dict(machine._transitions)
        for item in h2.connection.ConnectionInputs:
            transitions.setdefault((h2.connection.ConnectionState.CLOSED, item), (None, h2.connection.ConnectionState.CLOSED))
        machine._transitions = transitions  # type: ignore[misc]
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        if window:
            self.conn.increment_flow_control_window(window)
        self.authority = f"{host}:{port}".encode()
        self.events: list[Any] = []
        self.closed = False
        self.goaway: Optional[h2.events.ConnectionTerminated] = None
        self.raw_in = b""
        self.auto_ack = True  # acknowledge response DATA as it arrives (False: the window stays shut)
        self.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> "H2Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, path: str = "/", method: str = "GET", body: Optional[bytes] = None,
                headers: Optional[list[tuple[bytes, bytes]]] = None, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", self.authority),
                (b":path", path.encode())] + list(headers or [])
        self.conn.send_headers(sid, hdrs, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def receive(self, timeout: float = 5.0) -> list[Any]:
        """Events from one read (empty list on EOF; sets ``closed``)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return []
        self.raw_in += data
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return []
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
            elif isinstance(event, h2.events.DataReceived) and self.auto_ack and event.flow_controlled_length:
                with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.events += events
        with contextlib.suppress(OSError):
            self.flush()
        return events

    def until(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Read until ``predicate(self)`` holds (True) or EOF/timeout (False)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return bool(predicate(self))
            try:
                self.receive(left)
            except socket.timeout:
                return bool(predicate(self))
        return True

    def response(self, sid: int, timeout: float = 5.0) -> tuple[int, dict[bytes, bytes], bytes]:
        """(status, headers, body) of stream ``sid``, acknowledging its data as it comes."""
        def ended(c: "H2Client") -> bool:
            return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == sid
                       for e in c.events)
        assert self.until(ended, timeout), f"stream {sid} did not end"
        status, headers, body = 0, {}, b""
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                headers = dict(e.headers)
                status = int(headers[b":status"])
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
            elif isinstance(e, h2.events.StreamEnded):
                break  # a RST_STREAM(NO_ERROR) after a complete response only stops the upload
            elif isinstance(e, h2.events.StreamReset):
                raise ConnectionError(f"stream {sid} reset with {e.error_code!r}")
        return status, headers, body

    # -- raw frames, for what h2 would refuse to send ------------------------------------------
    def send_block(self, headers: list[tuple[bytes, bytes]], sid: Optional[int] = None, end: bool = True,
                   depends_on: Optional[int] = None) -> int:
        """One HEADERS frame carrying ``headers`` exactly as given (malformed on purpose: no
        validation, no normalisation), HPACK-encoded with the client's own encoder so later
        requests stay in step. Without ``sid`` it opens the next stream, which the client's h2 does
        not know about: call ``skip(sid)`` once the server answered it."""
        if sid is None:
            sid = self.conn.get_next_available_stream_id()
        flags = ["END_HEADERS"] + (["END_STREAM"] if end else [])
        frame = HeadersFrame(sid, data=self.conn.encoder.encode(headers), flags=flags)
        if depends_on is not None:
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight = depends_on, 15
        self.conn.state_machine.process_input(h2.connection.ConnectionInputs.SEND_HEADERS)  # as h2 would (IDLE -> OPEN)
        self.send_raw(frame_bytes(frame))
        return sid

    def skip(self, sid: int) -> None:
        """The client's h2 opens streams after ``sid`` from now on (it was used by raw frames)."""
        self.conn.highest_outbound_stream_id = max(self.conn.highest_outbound_stream_id or 0, sid)

    def frames(self) -> list[Frame]:
        """Every whole frame the server sent so far, parsed from the raw bytes (whatever the
        client's h2 made of them: it ignores a RST_STREAM for a stream it never opened)."""
        out: list[Frame] = []
        data, pos = self.raw_in, 0
        while len(data) - pos >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
            if len(data) - pos - 9 < length:
                break
            frame.parse_body(memoryview(data[pos + 9:pos + 9 + length]))
            out.append(frame)
            pos += 9 + length
        return out

    def reset_code(self, sid: int, timeout: float = 5.0) -> Optional[int]:
        """The error code of the server's RST_STREAM on ``sid``; None if the connection ended
        (GOAWAY or EOF) or nothing came first."""
        def found(c: "H2Client") -> Optional[int]:
            for frame in c.frames():
                if isinstance(frame, RstStreamFrame) and frame.stream_id == sid:
                    return int(frame.error_code)
            return None

        self.until(lambda c: found(c) is not None or c.goaway is not None, timeout)
        return found(self)


def frame_bytes(frame: Frame) -> bytes:
    return bytes(frame.serialize())
