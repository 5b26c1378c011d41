"""The "limit" reference: the least any Python asyncio server can do per request.

A uvloop ``asyncio.Protocol`` that parses nothing and runs no app: for every request head it sees
(counted by its blank line) it writes one precomputed response, in one ``transport.write`` per
``data_received``. Only valid for body-less requests without pipelining tricks, which is all wrk sends
in the scenarios that use it. Every server's number can be read as a fraction of this one.

    python -m benchmarks.limit_server --port 8000 --body 'Hello, world!' --content-type text/plain
"""
from __future__ import annotations

import argparse
import asyncio
import email.utils
import signal

import uvloop


def canned_response(body: bytes, content_type: str) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"date: {email.utils.formatdate(usegmt=True)}\r\n"
        "server: limit\r\n"
        f"content-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class CannedProtocol(asyncio.Protocol):
    response = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        # Count head terminators, allowing one split across two reads.
        data = self.tail + data
        n = data.count(b"\r\n\r\n")
        self.tail = data[-3:]
        if n:
            self.transport.write(self.response * n)  # type: ignore[attr-defined]


async def serve(host: str, port: int, response: bytes) -> None:
    CannedProtocol.response = response
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CannedProtocol, host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", default="Hello, world!")
    parser.add_argument("--content-type", default="text/plain; charset=utf-8")
    args = parser.parse_args()
    response = canned_response(args.body.encode(), args.content_type)
    uvloop.run(serve(args.host, args.port, response))


if __name__ == "__main__":
    main()
