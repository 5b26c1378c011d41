"""Per-request cost of the server's own code, without sockets: a repeatable profile.

Drives ``HttpProtocol`` through a fake transport with one keep-alive request at a time (the
next one is fed from the loop once the response is written), serving the plaintext app of
``benchmarks/apps/asgi_raw.py``. Reports wall time per request, or, with ``--instructions``,
CPU instructions per request counted by valgrind (callgrind): the difference between a short
and a long run, so start-up cancels out. Instruction counts move by well under 1% between runs
on this noisy machine, where timings move by 5%.

    .venv/bin/python -m benchmarks.costs [--http h11] [--request browser] [--requests N] [--instructions]
                                         [--access-log] [--metrics]

--access-log writes the access line (to a logger with no handler: the formatting is counted, not
the write); --metrics turns on the live figures' counting (their listener is not started: a
scrape is not per request).
"""
from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

REQUESTS = {
    # What wrk sends: a request line and a Host field.
    "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    # What a browser sends for a page: 16 fields, about 900 bytes.
    "browser": (
        b"GET /articles/2026/asgi-servers?page=2 HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Connection: keep-alive\r\n"
        b"Cache-Control: max-age=0\r\n"
        b'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"\r\n'
        b"sec-ch-ua-mobile: ?0\r\n"
        b'sec-ch-ua-platform: "Linux"\r\n'
        b"Upgrade-Insecure-Requests: 1\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/131.0.0.0 Safari/537.36\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
        b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
        b"Sec-Fetch-Site: same-origin\r\n"
        b"Sec-Fetch-Mode: navigate\r\n"
        b"Sec-Fetch-User: ?1\r\n"
        b"Sec-Fetch-Dest: document\r\n"
        b"Referer: https://example.com/articles/2026/asgi-servers\r\n"
        b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
        b"Accept-Language: en-GB,en;q=0.9,fr;q=0.8\r\n"
        b"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1\r\n"
        b"\r\n"
    ),
}


class NullTransport:
    """The transport calls a protocol makes that need no answer here (a fake transport's base)."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Transport(NullTransport):
    """Just enough of a transport: each write answers a request and feeds the next one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proto: Any, count: int, done: "asyncio.Future[None]",
                 request: bytes = REQUESTS["wrk"]) -> None:
        self.loop, self.proto, self.left, self.done, self.request = loop, proto, count, done, request

    def write(self, data: bytes) -> None:
        if not (data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nHello, world!")):
            raise AssertionError(f"not the plaintext response: {data[:200]!r}")
        self.left -= 1
        if self.left > 0:
            self.loop.call_soon(self.proto.data_received, self.request)
        elif not self.done.done():
            self.done.set_result(None)


async def _serve(http: str, count: int, request: bytes, access_log: bool = False, metrics: bool = False) -> float:
    from asgiserve.config import Config
    from asgiserve.http.protocol import HttpProtocol
    from asgiserve.server import Server, ServerState
    from benchmarks.apps.asgi_raw import app

    config = Config(app="benchmarks.apps.asgi_raw:app", http=http, access_log=access_log,
                    metrics="127.0.0.1:0" if metrics else None)
    if access_log:
        import logging

        logging.getLogger("asgiserve.access").setLevel(logging.INFO)
        logging.getLogger("asgiserve.access").propagate = False
    loop = asyncio.get_running_loop()
    state = ServerState(Server(config), config, app, loop)
    done: asyncio.Future[None] = loop.create_future()
    proto = HttpProtocol(state)
    proto.connection_made(_Transport(loop, proto, count, done, request))
    start = time.perf_counter()
    proto.data_received(request)
    await done
    return (time.perf_counter() - start) / count


def wall(http: str, count: int, request: str = "wrk", access_log: bool = False, metrics: bool = False) -> float:
    import uvloop

    return uvloop.run(_serve(http, count, REQUESTS[request], access_log, metrics))


def callgrind_per_item(module: str, args: list[str], count_flag: str, base: int, count: int) -> int:
    """Instructions per item: callgrind totals of ``python -m module`` run with ``base`` and with
    ``base + count`` items (``count_flag N``), subtracted, so start-up cancels out."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install -y valgrind")
    totals = []
    for n in (base, base + count):
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-m", module, *args, count_flag, str(n)],
            capture_output=True, text=True, check=True, cwd=REPO,
        ).stderr
        match = re.search(r"Collected : (\d+)", out)
        if match is None:
            raise SystemExit("callgrind printed no total:\n" + out[-2000:])
        totals.append(int(match.group(1)))
    return (totals[1] - totals[0]) // count


def instructions(http: str, count: int, request: str = "wrk", access_log: bool = False, metrics: bool = False) -> int:
    """Instructions per request: a run of 2,000 requests and one of 2,000 + ``count``."""
    flags = ["--http", http, "--request", request] + ["--access-log"] * access_log + ["--metrics"] * metrics
    return callgrind_per_item("benchmarks.costs", flags, "--requests", 2000, count)


def main(argv: "list[str] | None" = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.costs", description=__doc__.split("\n")[0])
    parser.add_argument("--http", default="httptools", choices=("httptools", "h11"))
    parser.add_argument("--request", default="wrk", choices=sorted(REQUESTS), help="the request's shape")
    parser.add_argument("--requests", type=int, default=20000, help="how many")
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind")
    parser.add_argument("--access-log", action="store_true", help="format the access line of each request")
    parser.add_argument("--metrics", action="store_true", help="count the live figures (--metrics)")
    args = parser.parse_args(argv)
    what = f"{args.http}, {args.request} request" + ", access log" * args.access_log + ", metrics" * args.metrics
    if args.instructions:
        count = instructions(args.http, args.requests, args.request, args.access_log, args.metrics)
        print(f"{count} instructions per request ({what})")
    else:
        took = wall(args.http, args.requests, args.request, args.access_log, args.metrics)
        print(f"{took * 1e6:.2f} µs per request ({what}, no I/O)")


if __name__ == "__main__":
    main()
