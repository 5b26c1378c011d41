"""Instructions per request, pure Python against the mypyc build (docs/mypyc.md).

Runs ``benchmarks.costs --instructions`` in this checkout (pure) and in its compiled copy
(``./dev compile`` makes build/compiled) for each parser and request shape, and prints a table.

    ./dev compile && .venv/bin/python -m benchmarks.compiled_costs [--requests N] [--access-log]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPILED = REPO / "build" / "compiled"


def count(tree: Path, http: str, request: str, requests: int, extra: list[str]) -> int:
    check = "import asgiserve.http.protocol as p, sys; sys.exit(p.__file__.endswith('.so') != %r)" % (tree == COMPILED)
    subprocess.run([sys.executable, "-c", check], cwd=tree, check=True)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.costs", "--instructions", "--http", http, "--request", request,
         "--requests", str(requests), *extra],
        cwd=tree, check=True, capture_output=True, text=True,
    ).stdout
    match = re.match(r"(\d+) instructions", out)
    assert match is not None, out
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at once (counts do not depend on load)")
    args = parser.parse_args()
    if not (COMPILED / "asgiserve").is_dir():
        raise SystemExit("no compiled copy: run ./dev compile first")
    extra = ["--access-log"] * args.access_log
    rows = [(h, r) for h in ("httptools", "h11") for r in ("wrk", "browser")]
    with ThreadPoolExecutor(args.jobs) as pool:
        pure = [pool.submit(count, REPO, h, r, args.requests, extra) for h, r in rows]
        compiled = [pool.submit(count, COMPILED, h, r, args.requests, extra) for h, r in rows]
        print("| parser | request | pure | compiled | change |")
        print("|---|---|---:|---:|---:|")
        for (h, r), p, c in zip(rows, pure, compiled):
            a, b = p.result(), c.result()
            print(f"| {h} | {r} | {a:,} | {b:,} | {100 * (b - a) / a:+.1f}% |", flush=True)


if __name__ == "__main__":
    main()
