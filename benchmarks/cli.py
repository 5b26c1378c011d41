"""``python -m benchmarks``: run the scenarios, write results.json, results.md and PNG plots."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import shutil
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Optional

from . import h2, h2load, memory, plots, report, ws, wsload
from .runner import Progress, Settings, planned, run_load, run_memory
from .scenarios import all_scenarios, select
from .servers import REPO, SERVERS, SOURCE, compiled_copy
from .wrk import WRK_MISSING, find_wrk

QUICK_SCENARIOS = ["plaintext", "fastapi", "wsgi", "sync-async", "download-1m", "memory",
                   "h2-plaintext-64x10"]  # headline servers only; the HTTP/2 one only where h2load is installed
PACKAGES = ("asgiserve", "uvicorn", "httptools", "uvloop", "h11", "hypercorn", "granian", "gunicorn", "a2wsgi",
            "starlette", "fastapi", "flask", "websockets", "wsproto", "h2", "zttp")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help=f"about a minute: 1 round of 1 s, fewer sweep points, the headline servers (unless --servers), "
                        f"scenarios {','.join(QUICK_SCENARIOS)} (unless --scenario)")
    p.add_argument("--scenario", action="append", default=[], metavar="NAME",
                   help="scenario(s) to run (repeatable or comma list); default: all. See --list")
    p.add_argument("--servers", default="", help="comma list of servers to keep (e.g. asgiserve,uvicorn)")
    p.add_argument("--rounds", type=int, help="alternating rounds per scenario (default 4; quick 1)")
    p.add_argument("--duration", type=float, help="seconds per measurement, whole seconds (default 3; quick 1)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per server and scenario (default 1)")
    p.add_argument("--retries", type=int, default=2,
                   help="repeat a measurement up to N times while other processes use >15%% of the server's core "
                        "(default 2; 0 for none; at most 25%% extra measurements per run); the quietest is kept")
    p.add_argument("--no-freeze", action="store_true",
                   help="leave a scenario's other servers running (idle) while one is measured, as before "
                        "2026-12-04; by default they are frozen with SIGSTOP so each server is measured alone")
    p.add_argument("--out", help="output directory (default benchmarks/results, or benchmarks/results/quick)")
    p.add_argument("--server-cpu", type=int, default=0, help="core the servers are pinned to (default 0)")
    p.add_argument("--client-cpu", type=int, default=1, help="core wrk and the harness are pinned to (default 1)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything (results are then much noisier)")
    p.add_argument("--snapshot", action="store_true",
                   help="serve asgiserve and the apps from a `git archive HEAD` copy, so edits to the working "
                        "tree during the run cannot leak into it (the committed results use this)")
    p.add_argument("--list", action="store_true", help="list scenarios and servers, then exit")
    p.add_argument("--report-only", metavar="RESULTS_JSON", help="rebuild tables and plots from a results.json")
    a = p.parse_args(argv)
    a.scenario = [n for item in a.scenario for n in item.split(",") if n]
    a.servers = [n for n in a.servers.split(",") if n]
    if a.quick and not a.scenario:
        a.scenario = list(QUICK_SCENARIOS)
        if h2load.find_h2load() is None:
            print(f"--quick: skipping the HTTP/2 smoke run: {h2load.H2LOAD_MISSING}", file=sys.stderr)
            a.scenario = [n for n in a.scenario if not n.startswith("h2-")]
    a.rounds = a.rounds or (1 if a.quick else 4)
    a.duration = a.duration or (1 if a.quick else 3)
    a.warmup = a.warmup or 1
    a.out = a.out or os.path.join(REPO, "benchmarks", "results", "quick" if a.quick else "")
    return a


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()} ({platform.python_implementation()})")


def snapshot() -> str:
    """Extract HEAD's asgiserve/ and benchmarks/ into a temp dir; return it."""
    import tempfile

    dest = tempfile.mkdtemp(prefix="asgiserve-bench-")
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD", "asgiserve", "benchmarks"], cwd=REPO,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def versions(snap: bool) -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    wrk = find_wrk()
    if wrk:
        first = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()
        out["wrk"] = first[0].split()[1] if first and len(first[0].split()) > 1 else "?"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "asgiserve"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        note = " (git archive snapshot)" if snap else (" (+ uncommitted changes)" if dirty else "")
        out["asgiserve commit"] = (rev.stdout.strip() or "?") + note
    except OSError:
        pass
    return out


def write_outputs(results: dict[str, Any], out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    made = plots.write_plots(results, out_dir)
    return report.write_markdown(results, out_dir, made)


def scenario_record(s: Any) -> dict[str, Any]:
    variants = [{"id": v.id, "server": v.server, "title": v.title, "kind": v.kind, "app": v.app,
                 "path": v.path or s.path, "threads": v.opts.threads if v.kind == "wsgi" else None,
                 "note": SERVERS[v.server].note}
                for v in s.variants]
    return {"name": s.name, "title": s.title, "kind": s.kind, "path": s.path,
            "method": "POST" if s.post_bytes else "GET", "concurrency": list(s.concurrency),
            "body_bytes": s.body_bytes, "post_bytes": s.post_bytes, "conn_counts": list(s.conn_counts),
            "ideal_seconds": s.ideal_seconds, "notes": s.notes, "unique_targets": s.unique_targets,
            "h2_streams": s.h2_streams,
            "variants": variants, "baselines": {v.id: s.baseline_for(v) for v in s.variants}, "rows": []}


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    if a.list:
        for s in all_scenarios():
            print(f"{s.name:<14} {s.kind:<10} {s.title}  [{', '.join(v.id for v in s.variants)}]")
        print("servers:", ", ".join(SERVERS))
        return 0
    if a.report_only:
        with open(a.report_only) as f:
            results = json.load(f)
        print(write_outputs(results, os.path.dirname(os.path.abspath(a.report_only))))
        return 0
    scenarios = select(a.scenario, a.servers, a.quick)
    if find_wrk() is None and any(s.kind not in ws.KINDS + h2.KINDS for s in scenarios):
        print(WRK_MISSING, file=sys.stderr)
        return 2
    if wsload.find_cc() is None and any(s.kind in ws.KINDS for s in scenarios):
        print(wsload.CC_MISSING, file=sys.stderr)
        return 2
    if h2load.find_h2load() is None and any(s.kind in h2.KINDS for s in scenarios):
        print(h2load.H2LOAD_MISSING, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # so `kill` of the harness still stops its servers
    pin = not a.no_pin and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {a.client_cpu})  # keep the harness itself off the servers' core
    memory.raise_nofile(1 << 20)  # servers inherit it: the memory scenarios hold 10,000 connections
    st = Settings(a.rounds, max(1, round(a.duration)), max(1, round(a.warmup)),
                  a.server_cpu if pin else None, a.client_cpu if pin else None, 0 if not pin else a.retries,
                  freeze=not a.no_freeze)
    method = (f"one worker per server{f', pinned to core {a.server_cpu}' if pin else ''}; wrk -t1"
              f"{' (wsload for WebSockets)' if any(s.kind in ws.KINDS for s in scenarios) else ''}"
              f"{' (h2load -t1 for HTTP/2)' if any(s.kind in h2.KINDS for s in scenarios) else ''}"
              f"{f' pinned to core {a.client_cpu}' if pin else ''}; keep-alive; {st.warmup} s warm-up per server; "
              f"{st.rounds} rounds of {st.duration} s alternating order (A..Z then Z..A; sweeps at most 2 rounds, "
              f"the I/O sweep in 5 s windows); medians with min-max; noisy measurements repeated up to "
              f"{st.retries} times; "
              f"{'each server measured alone (the others frozen)' if st.freeze else 'the other servers idle meanwhile'}")
    results: dict[str, Any] = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "versions": versions(a.snapshot), "method": method,
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "settings": vars(a), "loadavg_before": _loadavg(), "failures": {}}, "scenarios": []}
    if any(s.kind in ws.KINDS for s in scenarios):
        results["meta"]["versions"]["uvicorn --ws auto"] = wsload.uvicorn_ws_auto()
        results["meta"]["versions"]["wsload compiler"] = wsload.compiler()
    if any(s.kind in h2.KINDS for s in scenarios):
        results["meta"]["versions"]["h2load"] = h2load.version()
    if a.snapshot:
        SOURCE["dir"] = snapshot()
    if any(SERVERS[v.server].compiled for s in scenarios for v in s.variants):
        print("building the mypyc-compiled copy of asgiserve for the -mypyc servers (about a minute)", flush=True)
        SOURCE["compiled"] = compiled_copy(SOURCE["dir"])
    progress = Progress(sum(planned(s, st) for s in scenarios))
    st.retry_budget = progress.total // 4  # at most ~25% extra measurements over the whole run
    print(f"{len(scenarios)} scenario(s), {progress.total} measurements; {method}", flush=True)
    t0 = time.monotonic()
    try:
        for s in scenarios:
            rec = scenario_record(s)
            results["scenarios"].append(rec)
            t = time.monotonic()
            try:
                if s.kind == "memory":
                    rec["memory"] = run_memory(s, st, progress, results["meta"]["failures"])
                elif s.kind == "ws-memory":
                    rec["memory"] = ws.run_memory(s, st, progress, results["meta"]["failures"])
                else:
                    rec["rows"] = run_load(s, st, progress, results["meta"]["failures"])
            except (RuntimeError, OSError) as e:  # one broken scenario must not lose the others
                results["meta"]["failures"][s.name] = f"{type(e).__name__}: {e}"
                print(f"{s.name}: FAILED: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}", flush=True)
            rec["seconds"] = time.monotonic() - t
    except KeyboardInterrupt:
        print("interrupted: servers stopped; writing what was measured", file=sys.stderr)
        results["meta"]["interrupted"] = True
    finally:
        results["meta"]["total_seconds"] = time.monotonic() - t0
        results["meta"]["loadavg_after"] = _loadavg()
        path = write_outputs(results, a.out)
        if a.snapshot:
            shutil.rmtree(SOURCE["dir"], ignore_errors=True)
        if "compiled" in SOURCE:
            shutil.rmtree(SOURCE.pop("compiled"), ignore_errors=True)
        print(f"results: {path} ({results['meta']['total_seconds'] / 60:.1f} min)")
    http1 = report.headline(results)
    print("\n".join((http1 if len(http1) > 2 else []) + ws.headline(results) + h2.headline(results)
                    + h2.failure_notes(results)))
    failed = results["meta"]["failures"]
    return 1 if failed or results["meta"].get("interrupted") else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"
