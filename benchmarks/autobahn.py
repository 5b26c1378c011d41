"""WebSocket conformance: the Autobahn|Testsuite cases against asgiserve (or uvicorn), driven by kosoku.

    python -m benchmarks.autobahn                                  # asgiserve, httptools, every case
    python -m benchmarks.autobahn --http h11
    python -m benchmarks.autobahn --server uvicorn                 # the reference
    python -m benchmarks.autobahn --cases '1.*,5.*' --exclude 5.19 --report /tmp/ab

The server under test runs as a subprocess on 127.0.0.1 and a free port, in its own session, serving
``benchmarks.apps.ws_echo:app``; readiness is a TCP connect that succeeds (polled, never a fixed sleep);
kosoku (a Rust runner for Autobahn's own case files, "fuzzingclient" mode) connects once per case;
the server is stopped by PID (SIGTERM to its process group, SIGKILL after a deadline). The whole run is
bounded by ``--timeout``.

Output: per-section counts (1..13, by the case id's first number) and every FAILED / NON-STRICT case with
what kosoku observed. Exit status 1 when any case FAILED or the run timed out, 2 when the server could not be
started or a case pattern matched nothing (Autobahn has no section 8 or 11).

How a case is counted (the colours of Autobahn's own report):
  UNIMPLEMENTED  the case's verdict is UNIMPLEMENTED (12.x/13.x: no permessage-deflate negotiated);
  FAILED         verdict FAILED or ERROR (could not run), or the closing handshake was UNCLEAN or FAILED;
  NON-STRICT     verdict NON-STRICT, or the closing verdict was WRONG CODE or FAILED BY CLIENT;
  INFORMATIONAL  verdict INFORMATIONAL; otherwise OK.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Optional, Sequence

HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "benchmarks.apps.ws_echo:app"
MAX_SIZE = 16 * 1024 * 1024  # cases 9.x send messages up to 16 MiB
SERVERS = ("asgiserve", "uvicorn")
PARSERS = ("httptools", "h11")
CATEGORIES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
SECTIONS = {
    1: "framing", 2: "pings/pongs", 3: "reserved bits", 4: "opcodes", 5: "fragmentation",
    6: "UTF-8 handling", 7: "close handling", 9: "limits/performance", 10: "auto-fragmentation",
    12: "permessage-deflate", 13: "permessage-deflate params",  # Autobahn has no section 8 or 11
}
# Keepalive pings from the server are pushed past the longest case (12.x/13.x time out at 480 s): Autobahn's
# Case.finishWhenDone starts the closing handshake on ANY event when a case lists no expected events, which
# is how the 12.x/13.x cases are written, so an unsolicited ping cuts such a case short and it is reported
# FAILED "Case did not finish within N seconds". Both servers ping every 20 s by default, and on a loaded
# machine the 128 KiB x 1000-message cases take longer than that (uvicorn --http h11: 12 such false FAILs).
WS_PING_INTERVAL = 600.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


# -- the server under test ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _venv_bin(name: str) -> list[str]:
    """The console script next to this interpreter (the venv's), else ``python -m NAME``."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return [here] if os.path.exists(here) else [sys.executable, "-m", name]


def server_command(server: str, http: str, port: int, ping_interval: float = WS_PING_INTERVAL) -> list[str]:
    ping = ["--ws-ping-interval", f"{ping_interval:g}"]
    if server == "asgiserve":
        return _venv_bin("asgiserve") + [APP, "--host", HOST, "--port", str(port), "--http", http,
                                         "--no-access-log", "--ws-max-size", str(MAX_SIZE)] + ping
    if server == "uvicorn":
        return _venv_bin("uvicorn") + [APP, "--host", HOST, "--port", str(port), "--http", http,
                                       "--ws-max-size", str(MAX_SIZE), "--no-access-log"] + ping
    raise ValueError(f"unknown server {server!r} (choose from {', '.join(SERVERS)})")


def snapshot() -> str:
    """Extract HEAD's asgiserve/ into a temp dir (put first on the server's PYTHONPATH); return the dir."""
    dest = tempfile.mkdtemp(prefix="asgiserve-autobahn-")
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD", "asgiserve"], cwd=REPO,
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True, timeout=60)
    return dest


def source_note(snapshot_dir: Optional[str]) -> str:
    """Which asgiserve code the server ran: the commit, and whether uncommitted edits could be in it."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "asgiserve"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    if snapshot_dir:
        return f"{rev} (git archive snapshot of HEAD)"
    return f"{rev} + uncommitted changes in asgiserve/" if dirty else rev


class ServerProcess:
    """The server under test in its own session; ``stop()`` is idempotent and kills the group by PID."""

    def __init__(self, server: str, http: str, source: Optional[str] = None,
                 ping_interval: float = WS_PING_INTERVAL) -> None:
        self.name, self.http = server, http
        self.port = free_port()
        self.cmd = server_command(server, http, self.port, ping_interval)
        path = [source] if source else []  # a snapshot's asgiserve/ shadows the working tree's
        path += [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        self.log: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.returncode: Optional[int] = None

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def output(self, limit: int = 4000) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll the TCP port until a connect succeeds; fail fast if the process died."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before listening:\n"
                                   f"{self.output()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not listening on {HOST}:{self.port} after {timeout:.0f} s:\n"
                                       f"{self.output()}")
                time.sleep(0.05)  # interval between connect attempts, not a readiness guess

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.returncode is not None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the group id is its PID
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.returncode = self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- running kosoku -----------------------------------------------------------------------------------------
@dataclass
class Run:
    server: str
    http: str
    cases: list[str]
    exclude: list[str]
    results: list[Any] = field(default_factory=list)  # kosoku CaseResult, in case order
    seconds: float = 0.0
    timed_out: bool = False
    server_log: str = ""
    server_cmd: list[str] = field(default_factory=list)
    source: str = ""


async def _drive(url: str, cases: Sequence[str], exclude: Sequence[str], concurrency: int,
                 timeout: float, on_timeout: Any) -> tuple[list[Any], bool]:
    import kosoku

    async def run() -> list[Any]:
        try:
            return list(await kosoku.run_fuzzingclient(url, list(cases), list(exclude) or None,
                                                       concurrency=concurrency))
        except kosoku.FailureError as failure:  # raised when any case did not pass; carries every result
            return list(failure.results)

    task = asyncio.ensure_future(run())
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        return task.result(), False
    on_timeout()  # stop the server: the cases still running end on a closed connection
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=30)
    if done and not task.cancelled() and task.exception() is None:
        return task.result(), True
    return [], True


def run_suite(server: str = "asgiserve", http: str = "httptools", cases: Sequence[str] = ("*",),
              exclude: Sequence[str] = (), concurrency: int = 1, timeout: float = 1800.0,
              source: Optional[str] = None, ping_interval: float = WS_PING_INTERVAL) -> Run:
    """Start the server, run the selected cases against it, stop it. Raises RuntimeError if it won't start.

    ``source``: a directory holding an ``asgiserve/`` package to serve instead of the working tree's.
    """
    run = Run(server, http, list(cases), list(exclude))
    if server == "asgiserve":
        run.source = source_note(source)
    with ServerProcess(server, http, source, ping_interval) as proc:
        run.server_cmd = proc.cmd
        proc.wait_ready()
        started = time.monotonic()
        run.results, run.timed_out = asyncio.run(
            _drive(proc.url, cases, exclude, concurrency, timeout, proc.stop))
        run.seconds = time.monotonic() - started
        proc.stop()
        run.server_log = proc.output()
    return run


# -- verdicts -----------------------------------------------------------------------------------------------
def section(case_id: str) -> int:
    return int(case_id.split(".", 1)[0])


def category(result: Any) -> str:
    behavior, close = result.behavior.value, result.behavior_close.value
    if behavior == "UNIMPLEMENTED":
        return "UNIMPLEMENTED"
    if behavior in ("FAILED", "ERROR") or close in ("UNCLEAN", "FAILED"):
        return "FAILED"
    if behavior == "NON-STRICT" or close in ("WRONG CODE", "FAILED BY CLIENT"):
        return "NON-STRICT"
    if behavior == "INFORMATIONAL":
        return "INFORMATIONAL"
    return "OK"


def counts(results: Iterable[Any]) -> dict[int, Counter[str]]:
    table: dict[int, Counter[str]] = {}
    for r in results:
        table.setdefault(section(r.case_id), Counter())[category(r)] += 1
    return dict(sorted(table.items()))


def failed(results: Iterable[Any]) -> list[Any]:
    return [r for r in results if category(r) == "FAILED"]


def _short(value: Any, limit: int = 160) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain(r: Any) -> str:
    """What kosoku saw, in a few lines: the case, its verdicts, and how the connection ended."""
    lines = [f"{r.case_id}  [{r.behavior.value} / close {r.behavior_close.value}]  {_short(r.description)}",
             f"    expected: {_short(r.expectation)}",
             f"    verdict:  {_short(r.result)}  |  close: {_short(r.result_close)}"]
    close = (f"    closing:  server sent {r.remote_close_code} {_short(r.remote_close_reason or '', 60)!r}; "
             f"kosoku sent {r.local_close_code}; closed by kosoku={r.closed_by_me}, "
             f"dropped by kosoku={r.dropped_by_me}, clean={r.was_clean}")
    if r.was_not_clean_reason:
        close += f" ({_short(r.was_not_clean_reason, 80)})"
    lines.append(close)
    if r.expected is not None:
        lines.append(f"    events:   received {_short(r.received, 120)}; the case accepts {_short(r.expected, 200)}")
    return "\n".join(lines)


def table_markdown(table: dict[int, Counter[str]]) -> str:
    head = "| section | " + " | ".join(CATEGORIES) + " | total |"
    rows = [head, "|" + "---|" * (len(CATEGORIES) + 2)]
    total: Counter[str] = Counter()
    for sec, c in table.items():
        total.update(c)
        rows.append(f"| {sec} {SECTIONS.get(sec, '')} | " + " | ".join(str(c[k]) for k in CATEGORIES)
                    + f" | {sum(c.values())} |")
    rows.append("| **all** | " + " | ".join(str(total[k]) for k in CATEGORIES) + f" | {sum(total.values())} |")
    return "\n".join(rows)


def report_text(run: Run) -> str:
    out = [f"{run.server} --http {run.http}: {len(run.results)} cases in {run.seconds:.1f} s"
           f"{'  (TIMED OUT: the run was cut short)' if run.timed_out else ''}",
           f"server: {' '.join(run.server_cmd)}" + (f"  [asgiserve {run.source}]" if run.source else ""),
           f"cases: {','.join(run.cases)}" + (f"  exclude: {','.join(run.exclude)}" if run.exclude else ""),
           "", table_markdown(counts(run.results))]
    for cat in ("FAILED", "NON-STRICT"):
        picked = [r for r in run.results if category(r) == cat]
        if picked:
            out += ["", f"{cat} ({len(picked)}):"] + [explain(r) for r in picked]
    info = [r.case_id for r in run.results if category(r) == "INFORMATIONAL"]
    if info:
        out += ["", f"INFORMATIONAL ({len(info)}): {' '.join(info)}"]
    if any(k in run.server_log for k in ("Traceback", "ERROR", "Error")):
        out += ["", "server output (tail):", run.server_log]
    return "\n".join(out)


# -- command line -------------------------------------------------------------------------------------------
def _split(values: Optional[list[str]]) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.autobahn",
                                description="Autobahn|Testsuite WebSocket cases (kosoku fuzzingclient) "
                                            "against asgiserve or uvicorn on 127.0.0.1.")
    p.add_argument("--server", choices=SERVERS, default="asgiserve")
    p.add_argument("--http", choices=PARSERS, default="httptools", help="HTTP parser the server uses")
    p.add_argument("--cases", action="append", metavar="IDS",
                   help="case ids or globs, comma list or repeated (Autobahn 'cases'); default '*'")
    p.add_argument("--exclude", action="append", metavar="IDS",
                   help="case ids or globs to leave out, comma list or repeated (Autobahn 'exclude-cases')")
    p.add_argument("--concurrency", type=int, default=1,
                   help="cases run in parallel (default 1: the 9.x timings stay meaningful)")
    p.add_argument("--timeout", type=float, default=1800.0, help="bound on the whole run, seconds (default 1800)")
    p.add_argument("--report", metavar="DIR", help="also write kosoku's Autobahn-format HTML/JSON reports here")
    p.add_argument("--snapshot", action="store_true",
                   help="serve asgiserve from a `git archive HEAD` copy, so uncommitted edits cannot leak into the run")
    p.add_argument("--ws-ping-interval", type=float, default=WS_PING_INTERVAL, metavar="SECONDS",
                   help=f"the server's keepalive ping interval (default {WS_PING_INTERVAL:g}: longer than any case; "
                        "a ping arriving during a 12.x/13.x case ends it as FAILED)")
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the server is still stopped and the snapshot removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    try:
        import kosoku  # noqa: F401
    except ImportError:
        print("kosoku is not installed: pip install kosoku (it is in the 'test' extra)", file=sys.stderr)
        return 2
    source = snapshot() if args.snapshot and args.server == "asgiserve" else None
    try:
        run = run_suite(args.server, args.http, _split(args.cases) or ["*"], _split(args.exclude),
                        args.concurrency, args.timeout, source, args.ws_ping_interval)
    except (RuntimeError, ValueError) as exc:  # the server did not start; kosoku: "no cases match pattern: 8.*"
        print(exc, file=sys.stderr)
        return 2
    finally:
        if source:
            shutil.rmtree(source, ignore_errors=True)
    print(report_text(run))
    if args.report and run.results:
        from kosoku._report import write_reports

        write_reports(run.results, args.report)
        print(f"\nAutobahn report: {os.path.join(args.report, 'index.html')}")
    bad = failed(run.results)
    if run.timed_out:
        print(f"\nrun timed out after {args.timeout:.0f} s", file=sys.stderr)
    return 1 if bad or run.timed_out or not run.results else 0


if __name__ == "__main__":
    sys.exit(main())
