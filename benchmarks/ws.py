"""WebSocket scenarios: the idle-connection memory run and the tables of both WebSocket scenario kinds.

``ws`` (``ws-echo-16b``, ``ws-echo-64k``) runs through ``runner.run_load`` like any load scenario, with
wsload (``wsload.py``) in wrk's place: closed-loop echo, messages/s and latency, the client's CPU share.
Its ratios to uvicorn's default backend are the **median of per-round ratios** (each round visits every
server back to back, so a ratio within one round shares that moment's machine state), next to the ratio
of medians the HTTP tables use.

``ws-memory``: for every server and every way of holding connections, a FRESH server (a heap grown by one
measurement would flatter or burden the next), its RSS (whole process tree) after readiness, then while
holding N idle connections:
  ``http``        N keep-alive connections answered once (``memory.IdleConnections``: the `memory` scenario);
  ``ws``          N WebSockets after the handshake, no message, no extension offered;
  ``ws-deflate``  the same with permessage-deflate offered, as browsers do (servers that negotiate it may
                  keep zlib state per connection: the number that matters for many idle clients).
"""
from __future__ import annotations

import asyncio
import statistics
from typing import Any, Optional

from . import memory, stats
from .runner import Progress, Settings, started
from .scenarios import Scenario
from .stats import SATURATED, summarise
from .wsload import IdleWebSockets

MiB = float(1 << 20)
KINDS = ("ws", "ws-memory")
MODES = (("http", "keep-alive HTTP"), ("ws", "WebSockets, no extension"),
         ("ws-deflate", "WebSockets, permessage-deflate offered"))


# -- ws-memory ----------------------------------------------------------------------------------------------
def run_memory(s: Scenario, st: Settings, progress: Progress, failures: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for v in s.variants:
        one = Scenario(s.name, s.title, s.kind, (v,), path=s.path)
        row: dict[str, Any] = {"variant": v.id, "held": {}}
        for n in s.conn_counts:
            per_mode: dict[str, Any] = {}
            for mode, _ in MODES:
                with started(one, st, failures, progress) as procs:
                    if v.id not in procs:
                        break
                    p = procs[v.id]
                    before = p.rss()
                    try:
                        if mode == "http":
                            h = asyncio.run(_hold_http(p, n))
                        else:
                            h = _hold_ws(p, n, mode == "ws-deflate", st.client_cpu)
                    except (OSError, RuntimeError, ValueError, asyncio.TimeoutError) as e:
                        failures[f"{s.name}/{v.id}/{mode}/{n}"] = f"{type(e).__name__}: {e}"
                        h = {"error": f"{type(e).__name__}: {e}"}
                    per_mode[mode] = {"rss_before": before, **h}
            row["held"][str(n)] = per_mode
        if not any(row["held"].values()):
            continue
        befores = [m["rss_before"] for h in row["held"].values() for m in h.values()]
        row["idle_rss"] = statistics.median(befores)
        rows.append(row)
        progress.line(f"{s.name:<13} {v.id:<16} idle {row['idle_rss'] / MiB:6.1f} MiB  " + "  ".join(
            f"{n} {mode} " + (f"{m['rss'] / MiB:6.1f} MiB ({m['open']} open"
                              + (f", {m['deflate']} deflate" if mode == "ws-deflate" else "") + ")"
                              if "rss" in m else f"FAILED ({m.get('error')})")
            for n, h in row["held"].items() for mode, m in h.items()))
    return rows


async def _hold_http(p: Any, n: int) -> dict[str, Any]:
    memory.raise_nofile(n + 1024)
    async with memory.IdleConnections(p.port, n) as idle:
        rss = p.rss()
        return {"rss": rss, "open": memory.still_open(idle), "opened": n}


def _hold_ws(p: Any, n: int, deflate: bool, cpu: Optional[int]) -> dict[str, Any]:
    memory.raise_nofile(n + 1024)  # wsload inherits it (and raises its own soft limit as far as it may)
    with IdleWebSockets(p.port, n, deflate, cpu) as held:
        ready = held.ready
        if ready["open"] < n:
            errors = {k: ready[k] for k in ("connect", "handshake", "closed") if ready.get(k)}
            raise RuntimeError(f"only {ready['open']} of {n} WebSockets opened: {errors} {held.stderr}")
        rss = p.rss()
        final = held.release()
    return {"rss": rss, "open": final.get("open", 0), "opened": ready["open"], "deflate": ready["deflate"],
            "open_seconds": ready["seconds"]}


# -- tables -------------------------------------------------------------------------------------------------
def _fmt(x: Optional[float]) -> str:
    return f"{x:.2f}x" if x is not None else "–"


def round_ratios(s: dict[str, Any]) -> dict[tuple[str, int], Optional[float]]:
    """(variant, concurrency) -> median over rounds of (its msgs/s / the baseline's msgs/s in that round)."""
    return stats.round_ratios(s)


def echo_table(s: dict[str, Any]) -> list[str]:
    rows = summarise(s)
    per_round = round_ratios(s)
    mb = s.get("body_bytes", 0) > 0
    head = ("| server | conns | msgs/s median (min–max) | " + ("MB/s each way | " if mb else "")
            + "ratio (median of per-round ratios) | ratio of medians | msgs per server CPU-s | ratio (CPU) "
              "| p50 ms | p99 ms | server CPU | client CPU | other load | notes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(rows, key=lambda r: r["concurrency"]):
        cells = [r["title"], str(r["concurrency"]), f"{r['rps']:,.0f} ({r['rps_min']:,.0f}–{r['rps_max']:,.0f})"]
        if mb:
            cells.append(f"{r['mbps']:,.0f}")
        cells += [f"**{_fmt(per_round.get((r['variant'], r['concurrency'])))}**", _fmt(r["ratio"]),
                  f"{r['per_cpu']:,.0f}" if r["per_cpu"] else "–", _fmt(r["ratio_cpu"]),
                  f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['srv_load']:.0%}", f"{r['wrk_load']:.0%}",
                  f"{r['foreign_load']:.0%}", _notes(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _notes(r: dict[str, Any]) -> str:
    out = []
    if r.get("attempts", r["rounds"]) > r["rounds"]:
        out.append(f"{r['attempts'] - r['rounds']} noisy attempt(s) repeated")
    if r["saturated"]:
        out.append(f"client saturated {r['saturated']}/{r['rounds']}: lower bound")
    elif r["srv_load"] < 0.85:
        out.append(f"server busy only {r['srv_load']:.0%} of the time")
    if r["errors"]:
        out.append("errors " + ", ".join(f"{k} {n}" for k, n in r["errors"].items()))
    return "; ".join(out)


def memory_table(s: dict[str, Any]) -> list[str]:
    titles = {v["id"]: v["title"] for v in s["variants"]}
    n = int(s["conn_counts"][-1]) if s.get("conn_counts") else 0
    lines = ["| server | idle RSS | " + " | ".join(f"{n:,} {label}" for _, label in MODES)
             + " | per connection (HTTP / WS / WS deflate offered) | deflate accepted |",
             "|---|---|" + "---|" * len(MODES) + "---|---|"]
    for m in s.get("memory", []):
        held = m["held"].get(str(n), {})
        cells = [titles[m["variant"]], f"{m['idle_rss'] / MiB:.1f} MiB"]
        for mode, _ in MODES:
            h = held.get(mode)
            if not h:
                cells.append("–")
            elif "rss" not in h:
                cells.append("failed")
            else:
                still = "" if h["open"] == n else f" ({h['open']} still open)"
                cells.append(f"{h['rss'] / MiB:.1f} MiB{still}")
        per = [f"{(h['rss'] - h['rss_before']) / n / 1024:.1f}" if "rss" in h else "–"
               for h in (held.get(mode) or {} for mode, _ in MODES)]
        cells.append(" / ".join(per) + " KiB")
        d = held.get("ws-deflate") or {}
        cells.append(f"{d['deflate']:,} of {d['opened']:,}" if "deflate" in d else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def headline(results: dict[str, Any]) -> list[str]:
    """asgiserve against uvicorn's default WebSocket backend: echo ratios and idle-connection memory."""
    lines = ["| WebSocket scenario | asgiserve | uvicorn (--ws auto) | ratio (median of per-round ratios) "
             "| ratio of medians | client CPU (max) |", "|---|---|---|---|---|---|"]
    for s in results["scenarios"]:
        if s["kind"] == "ws":
            rows = {(r["variant"], r["concurrency"]): r for r in summarise(s)}
            per_round = round_ratios(s)
            for c in s["concurrency"]:
                ours, base = rows.get(("asgiserve", c)), rows.get(("uvicorn", c))
                if not ours or not base:
                    continue
                sat = " (saturated)" if max(ours["wrk_load"], base["wrk_load"]) >= SATURATED else ""
                lines.append(f"| {s['title']}, {c} conn{'s' if c > 1 else ''} | {ours['rps']:,.0f} msgs/s | "
                             f"{base['rps']:,.0f} msgs/s | **{_fmt(per_round.get(('asgiserve', c)))}** | "
                             f"{_fmt(ours['ratio'])} | {max(ours['wrk_load'], base['wrk_load']):.0%}{sat} |")
        elif s["kind"] == "ws-memory":
            mem = {m["variant"]: m for m in s.get("memory", [])}
            ours, base = mem.get("asgiserve"), mem.get("uvicorn")
            n = str(s["conn_counts"][-1]) if s.get("conn_counts") else None
            if not ours or not base or not n:
                continue
            for mode, label in MODES[1:]:
                a, b = ours["held"].get(n, {}).get(mode, {}), base["held"].get(n, {}).get(mode, {})
                if "rss" in a and "rss" in b:
                    lines.append(f"| RSS holding {int(n):,} idle {label} | {a['rss'] / MiB:.1f} MiB | "
                                 f"{b['rss'] / MiB:.1f} MiB | **{a['rss'] / b['rss']:.2f}x** | – | – |")
    return lines if len(lines) > 2 else []
