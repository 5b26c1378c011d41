"""Idle keep-alive connections: open N, do one request on each, keep them open, read the server's RSS.

The client is this (harness) process, on the client core, with RLIMIT_NOFILE raised; every connection is
on loopback and the whole step is bounded by a deadline.
"""
from __future__ import annotations

import asyncio
import resource
from typing import Any

HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def raise_nofile(want: int) -> int:
    """Raise the soft fd limit towards ``want`` (capped by the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def _one(port: int, sem: asyncio.Semaphore) -> Any:
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response: {head[:40]!r}")
        await reader.readexactly(length)
        return reader, writer


class IdleConnections:
    """``async with IdleConnections(port, n):`` holds n answered keep-alive connections open."""

    def __init__(self, port: int, n: int, in_flight: int = 100, timeout: float = 60.0) -> None:
        self.port, self.n, self.in_flight, self.timeout = port, n, in_flight, timeout
        self.conns: list[Any] = []

    async def __aenter__(self) -> "IdleConnections":
        sem = asyncio.Semaphore(self.in_flight)
        tasks = [asyncio.ensure_future(_one(self.port, sem)) for _ in range(self.n)]
        try:
            self.conns = await asyncio.wait_for(asyncio.gather(*tasks), self.timeout)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.conns = [t.result() for t in tasks if t.done() and not t.cancelled() and not t.exception()]
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for _, w in self.conns:
            w.close()
        self.conns = []
        await asyncio.sleep(0)


def still_open(idle: IdleConnections) -> int:
    """How many held connections the server has not closed (a closed one has seen EOF)."""
    return sum(1 for r, _ in idle.conns if not r.at_eof())
