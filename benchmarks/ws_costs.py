"""Per-message cost of a WebSocket echo in the server's own code, without sockets: a repeatable profile.

The WebSocket counterpart of ``benchmarks/costs.py``. Drives the server's protocol object through a
fake transport: the handshake, then one masked client message at a time (the next one is fed from
the loop once the whole echo is written), served by ``benchmarks/apps/ws_echo.py``. So each message
costs what it costs when the app is waiting for it (the 1-connection row): data_received, the
wake-up of the app's receive(), its send(), the write. Reports wall time per message, or, with
``--instructions``, CPU instructions per message counted by valgrind (callgrind): the difference
between a short and a long run, so start-up cancels out.

    .venv/bin/python -m benchmarks.ws_costs [--server asgiserve|uvicorn] [--http h11] [--size BYTES]
                                            [--text] [--split BYTES] [--messages N] [--instructions]

--split feeds each message in pieces of that many bytes, one data_received each (a 64 KiB frame
arrives over loopback in two or more reads). uvicorn is driven through its websockets-sansio
protocol (its default backend), which reads the handshake itself.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, Optional

from .costs import NullTransport, callgrind_per_item

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MASK = b"\x37\xfa\x21\x3d"


def client_frame(payload: bytes, text: bool) -> bytes:
    n = len(payload)
    first = 0x81 if text else 0x82
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


def echo_length(n: int) -> int:
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


class _Transport(NullTransport):
    """Each complete echo feeds the next message (from the loop, as a socket read would)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int, done: "asyncio.Future[None]",
                 pieces: list[bytes], echo: int) -> None:
        self.loop, self.left, self.done, self.pieces, self.echo = loop, count, done, pieces, echo
        self.proto: Any = None
        self.open = False
        self.got = 0

    def feed(self) -> None:
        for piece in self.pieces:
            self.proto.data_received(piece)

    def write(self, data: Any) -> None:
        if not self.open:
            if not bytes(data).startswith(b"HTTP/1.1 101 "):
                raise AssertionError(f"not a 101: {bytes(data)[:200]!r}")
            self.open = True
            self.loop.call_soon(self.feed)
            return
        self.got += len(data)
        if self.got < self.echo:
            return
        if self.got > self.echo:
            raise AssertionError(f"echo of {self.got} bytes, expected {self.echo}")
        self.got = 0
        self.left -= 1
        if self.left > 0:
            self.loop.call_soon(self.feed)
        elif not self.done.done():
            self.done.set_result(None)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", 50000)
        if name == "sockname":
            return ("127.0.0.1", 8000)
        return default


async def _serve(server: str, http: str, count: int, size: int, text: bool, split: Optional[int]) -> float:
    from benchmarks.apps.ws_echo import app

    loop = asyncio.get_running_loop()
    frame = client_frame((b"a" * size) if text else bytes(i % 251 for i in range(size)), text)
    pieces = [frame] if not split else [frame[i:i + split] for i in range(0, len(frame), split)]
    done: asyncio.Future[None] = loop.create_future()
    transport = _Transport(loop, count, done, pieces, echo_length(size))
    proto: Any
    if server == "asgiserve":
        from asgiserve.config import Config
        from asgiserve.http.protocol import HttpProtocol
        from asgiserve.server import Server, ServerState

        config = Config(app="benchmarks.apps.ws_echo:app", http=http, access_log=False, ws_ping_interval=0,
                        ws_per_message_deflate=False)
        state = ServerState(Server(config), config, app, loop)
        proto = HttpProtocol(state)
    else:
        import uvicorn.config
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from uvicorn.server import ServerState as UvicornState

        uconfig = uvicorn.config.Config(app=app, ws="websockets-sansio", ws_ping_interval=None,
                                        ws_per_message_deflate=False, lifespan="off", log_level="warning")
        uconfig.load()
        proto = WebSocketsSansIOProtocol(uconfig, UvicornState(), {}, loop)
    transport.proto = proto
    proto.connection_made(transport)
    start = time.perf_counter()
    proto.data_received(HANDSHAKE)
    await done
    took = (time.perf_counter() - start) / count
    import logging

    logging.getLogger("uvicorn.error").disabled = True  # its app task is cancelled at the loop's end
    return took


def wall(server: str, http: str, count: int, size: int, text: bool, split: Optional[int]) -> float:
    import uvloop

    return uvloop.run(_serve(server, http, count, size, text, split))


def instructions(server: str, http: str, count: int, size: int, text: bool, split: Optional[int]) -> int:
    """Instructions per message: a run of 300 messages and one of 300 + ``count``."""
    flags = ["--server", server, "--http", http, "--size", str(size)] + ["--text"] * text
    if split:
        flags += ["--split", str(split)]
    return callgrind_per_item("benchmarks.ws_costs", flags, "--messages", 300, count)


def main(argv: "list[str] | None" = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ws_costs", description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="asgiserve", choices=("asgiserve", "uvicorn"))
    parser.add_argument("--http", default="httptools", choices=("httptools", "h11"))
    parser.add_argument("--size", type=int, default=16, help="message size in bytes")
    parser.add_argument("--text", action="store_true", help="text messages (default binary)")
    parser.add_argument("--split", type=int, default=0, help="feed each frame in pieces of this many bytes")
    parser.add_argument("--messages", type=int, default=20000, help="how many")
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind")
    args = parser.parse_args(argv)
    what = f"{args.server}, {args.size} B {'text' if args.text else 'binary'}" + \
        (f", split {args.split}" if args.split else "")
    if args.instructions:
        count = instructions(args.server, args.http, args.messages, args.size, args.text, args.split)
        print(f"{count} instructions per message ({what})")
    else:
        took = wall(args.server, args.http, args.messages, args.size, args.text, args.split)
        print(f"{took * 1e6:.2f} µs per message ({what}, no I/O)")


if __name__ == "__main__":
    main()
