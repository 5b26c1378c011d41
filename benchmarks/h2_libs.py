"""Server-side protocol cost of HTTP/2 GET streams in h2 vs zttp (sans-I/O, no sockets): docs/http2.md.

    .venv/bin/python -m benchmarks.h2_libs        (needs h2; zttp measured when importable)

Client bytes (preface + 100 GET streams with browser-like fields) are made once with h2's client
side; each round feeds them to a fresh server connection that answers every stream with HEADERS
and one 13-byte DATA frame, draining the output after each request.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import h2.config
import h2.connection
import h2.events
import h2.settings

HEADERS = [
    (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", b"/index.html?x=1"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/125.0"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"accept-language", b"en-US,en;q=0.5"), (b"accept-encoding", b"gzip, deflate, br"),
    (b"cookie", b"session=abcdef0123456789; theme=dark"),
]
RESPONSE = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13"), (b"server", b"x")]
STREAMS, ROUNDS = 100, 200


def client_bytes() -> tuple[bytes, list[bytes]]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.increment_flow_control_window(2**31 - 1 - 65535)
    preface = client.data_to_send()
    requests = []
    for i in range(STREAMS):
        client.send_headers(1 + 2 * i, HEADERS, end_stream=True)
        requests.append(client.data_to_send())
    return preface, requests


def h2_round(preface: bytes, requests: list[bytes], validate: bool) -> float:
    config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                       validate_outbound_headers=validate, normalize_outbound_headers=validate)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    conn.receive_data(preface)
    conn.data_to_send()
    start = time.perf_counter()
    for data in requests:
        for event in conn.receive_data(data):
            if type(event) is h2.events.RequestReceived:
                conn.send_headers(event.stream_id, RESPONSE)
                conn.send_data(event.stream_id, b"Hello, world!", end_stream=True)
        conn.data_to_send()
    return time.perf_counter() - start


def zttp_round(preface: bytes, requests: list[bytes]) -> float:
    import zttp

    conn: Any = zttp.Connection(zttp.SERVER, protocol=zttp.HTTP2)
    conn.initiate_connection()
    conn.receive_data(preface)
    while conn.next_event() is not zttp.NEED_DATA:
        pass
    conn.data_to_send()
    start = time.perf_counter()
    for data in requests:
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is zttp.NEED_DATA:
                break
            if isinstance(event, zttp.Request):
                stream = conn.stream(event.stream_id)
                stream.send_response(200, RESPONSE[1:])
                stream.send_data(b"Hello, world!")
                stream.end_message()
        conn.data_to_send()
    return time.perf_counter() - start


def measure(name: str, one_round: Callable[[], float]) -> None:
    best = min(sum(one_round() for _ in range(ROUNDS)) for _ in range(3))
    print(f"{name}: {STREAMS * ROUNDS / best:,.0f} streams/s ({STREAMS} streams per connection, best of 3)")


def main() -> None:
    preface, requests = client_bytes()
    measure("h2, default validation", lambda: h2_round(preface, requests, True))
    measure("h2, outbound validation off (asgiserve)", lambda: h2_round(preface, requests, False))
    try:
        import zttp  # noqa: F401
    except ImportError:
        print("zttp: not installed (pip install zttp)")
    else:
        measure("zttp", lambda: zttp_round(preface, requests))


if __name__ == "__main__":
    main()
