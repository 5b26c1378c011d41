"""Per-stream cost of asgiserve's HTTP/2 (h2, the connection, the streams, the request cycles), no sockets.

Drives ``HttpProtocol`` with ``--http2`` through a fake transport the way h2load does: one h2c
connection (preface, SETTINGS with a 2^30-1 stream window, a connection WINDOW_UPDATE), then
batches of ``--streams`` GET requests in one read, the next batch once every response of the
previous one ended. The app is ``benchmarks/apps/h2_bench.py`` (13 bytes, or 1 MiB at ``/big``,
after which the client returns the connection window, as nghttp2 does). Reports wall time per
stream, or, with ``--instructions``, CPU instructions per stream counted by callgrind (a short and
a long run subtracted, so start-up cancels out). The fake client's own work (building frames,
finding END_STREAM in the output) is counted too, but is small and the same before and after.

    .venv/bin/python -m benchmarks.h2_costs [--path /big] [--streams 10] [--requests N] [--instructions]
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import time
from typing import Any

from .costs import NullTransport, callgrind_per_item

# What h2load sends (nghttp2 1.x): the four pseudo-header fields, user-agent and its two defaults.
FIELDS = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:8000"), (b":path", b"/"),
          (b"accept", b"*/*"), (b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"h2load nghttp2/1.59.0")]
WINDOW = 2**30 - 1


def client() -> tuple[Any, bytes]:
    """The client's connection (h2) and its opening bytes."""
    import h2.config
    import h2.connection
    import h2.settings

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW, h2.settings.SettingCodes.ENABLE_PUSH: 0})
    conn.initiate_connection()
    conn.increment_flow_control_window(WINDOW - 65535)
    return conn, conn.data_to_send()


def header_blocks(conn: Any, path: bytes) -> tuple[bytes, bytes]:
    """The client's first HPACK block (fields added to the dynamic table) and its steady state
    (every field indexed)."""
    fields = [(n, path if n == b":path" else v) for n, v in FIELDS]
    blocks = []
    for sid in (1, 3):
        conn.send_headers(sid, fields, end_stream=True)
        blocks.append(conn.data_to_send()[9:])
    return blocks[0], blocks[1]


class _Transport(NullTransport):
    """Counts END_STREAM flags in what the server writes; feeds the next batch when a batch is answered."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proto: Any, blocks: tuple[bytes, bytes], batch: int,
                 count: int, ack: int, done: "asyncio.Future[None]") -> None:
        self.loop, self.proto, self.batch, self.left, self.done = loop, proto, batch, count, done
        self.first, self.block = blocks
        self.sid = 1
        self.open = 0
        # nghttp2 returns the connection window as it is consumed: one WINDOW_UPDATE per response here.
        self.window_update = struct.pack(">I", 4)[1:] + b"\x08\x00" + b"\x00\x00\x00\x00" + struct.pack(">I", ack)
        self.ack = ack > 0

    def next_batch(self) -> None:
        n = min(self.batch, self.left)
        frames = []
        for _ in range(n):
            block = self.first if self.sid == 1 else self.block
            # HEADERS, END_STREAM|END_HEADERS
            frames.append(struct.pack(">I", len(block))[1:] + b"\x01\x05" + struct.pack(">I", self.sid) + block)
            self.sid += 2
        self.open = n
        self.proto.data_received(b"".join(frames))

    def write(self, data: bytes) -> None:
        pos = 0
        size = len(data)
        ended = 0
        while pos < size:  # h2 writes whole frames
            length = int.from_bytes(data[pos:pos + 3], "big")
            if data[pos + 3] <= 1 and data[pos + 4] & 1:  # DATA or HEADERS with END_STREAM
                ended += 1
            pos += 9 + length
        if not ended:
            return
        if self.ack:
            self.proto.data_received(self.window_update * ended)
        self.open -= ended
        self.left -= ended
        if self.open <= 0:
            if self.left > 0:
                self.loop.call_soon(self.next_batch)
            elif not self.done.done():
                self.done.set_result(None)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))


async def _serve(count: int, batch: int, path: str) -> float:
    from asgiserve.config import Config
    from asgiserve.http.protocol import HttpProtocol
    from asgiserve.server import Server, ServerState
    from benchmarks.apps.h2_bench import BIG, app

    config = Config(app="benchmarks.apps.h2_bench:app", access_log=False, http2=True)
    loop = asyncio.get_running_loop()
    state = ServerState(Server(config), config, app, loop)
    done: asyncio.Future[None] = loop.create_future()
    conn, opening = client()
    blocks = header_blocks(conn, path.encode())
    proto = HttpProtocol(state)
    transport = _Transport(loop, proto, blocks, batch, count, len(BIG) if path == "/big" else 0, done)
    proto.connection_made(transport)
    proto.data_received(opening)
    start = time.perf_counter()
    transport.next_batch()
    await done
    return (time.perf_counter() - start) / count


def wall(count: int, batch: int, path: str) -> float:
    import uvloop

    return uvloop.run(_serve(count, batch, path))


def instructions(count: int, batch: int, path: str) -> int:
    """Instructions per stream: a run of ``base`` streams and one of ``base + count``."""
    base = 20 if path == "/big" else 2000
    return callgrind_per_item("benchmarks.h2_costs", ["--streams", str(batch), "--path", path], "--requests",
                              base, count)


def main(argv: "list[str] | None" = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.h2_costs", description=__doc__.split("\n")[0])
    parser.add_argument("--path", default="/", help="/ (13 bytes) or /big (1 MiB)")
    parser.add_argument("--streams", type=int, default=10, help="requests per batch (h2load -m)")
    parser.add_argument("--requests", type=int, default=None, help="how many (default 20000; /big 500)")
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind")
    args = parser.parse_args(argv)
    count = args.requests or (500 if args.path == "/big" else 20000)
    what = f"GET {args.path}, {args.streams} streams at a time"
    if args.instructions:
        print(f"{instructions(count, args.streams, args.path):,} instructions per stream ({what})")
    else:
        print(f"{wall(count, args.streams, args.path) * 1e6:.2f} µs per stream ({what}, no I/O)")


if __name__ == "__main__":
    main()
