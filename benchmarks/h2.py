"""Tables of the HTTP/2 scenarios (``h2-*``, kind ``h2``): h2load in wrk's place, through ``runner.run_load``.

A measurement in which h2load counted failed, errored or timed-out requests, got a non-2xx status, or
saw responses stop before the window ended (the server closed or stalled a connection: h2load does not
reconnect in ``-D`` mode) is a **failed measurement**: its req/s counts only the requests that
completed, and every cell and ratio that uses it carries a ⚠ and says what happened.

Ratios are to uvicorn (``--http zttp --http2``), the scenario's baseline, as the **median of per-round
ratios** (each round visits every server back to back), next to the ratio of medians and per server
CPU-second. The headline gives asgiserve against every other server the same way.
"""
from __future__ import annotations

from typing import Any, Optional

from .stats import SATURATED, round_ratios, summarise

MiB = float(1 << 20)
KINDS = ("h2",)
WARN = "⚠"


def _fmt(x: Optional[float], warn: bool = False) -> str:
    return (f"{x:.2f}x" if x is not None else "–") + (f" {WARN}" if warn and x is not None else "")


def problems(s: dict[str, Any]) -> dict[str, list[str]]:
    """variant -> what went wrong in its measurements (empty list: every measurement clean)."""
    out: dict[str, list[str]] = {v["id"]: [] for v in s["variants"]}
    for vid in out:
        rows = [r for r in s.get("rows", []) if r["variant"] == vid]
        bad = [r for r in rows if r["errors"] or r.get("stalled")]
        if not bad:
            continue
        failed = sum(r["errors"].get("failed", 0) for r in rows)
        errored = sum(r["errors"].get("errored", 0) for r in rows)
        timeout = sum(r["errors"].get("timeout", 0) for r in rows)
        status = sum(r["errors"].get("status", 0) for r in rows)
        notes = [f"failed measurement in {len(bad)}/{len(rows)} rounds"]
        if failed or errored or timeout:
            notes.append(f"h2load: {failed:,} failed, {errored:,} errored, {timeout:,} timeout")
        if status:
            notes.append(f"{status:,} non-2xx")
        stalls = [r for r in rows if r.get("stalled")]
        if stalls:
            last = ", ".join(f"{r['last_response_s']:.2f}" for r in stalls)
            done = ", ".join(f"{r.get('done', 0):,}" for r in stalls)
            conns = stalls[0]["concurrency"]
            notes.append(f"server closed or stalled {'its connection' if conns == 1 else 'connections'}: "
                         f"responses stopped at {last} s of {stalls[0]['seconds']:.0f} s ({done} requests done); "
                         f"rate until then {_rate_until_cut(stalls)}")
        out[vid] = notes
    return out


def _rate_until_cut(rows: list[dict[str, Any]]) -> str:
    rates = sorted(r["requests"] / r["last_response_s"] for r in rows if r["last_response_s"] > 0)
    return f"~{rates[len(rates) // 2]:,.0f} req/s" if rates else "–"


def table(s: dict[str, Any]) -> list[str]:
    rows = summarise(s)
    bad = problems(s)
    base = s.get("baselines", {})
    per_round = round_ratios(s)
    mb = s.get("body_bytes", 0) > 0
    rss = any("peak_rss" in r for r in rows)
    head = ("| server | conns x streams | " + ("MB/s median (min–max) | " if mb else "req/s median (min–max) | ")
            + "ratio (median of per-round ratios) | ratio of medians | req per server CPU-s | ratio (CPU) "
            + "| p50 ms | p99 ms | server CPU | h2load CPU | other load | " + ("peak RSS | " if rss else "")
            + "notes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    streams = s.get("h2_streams", 0)
    for r in rows:
        vid = r["variant"]
        warn = bool(bad.get(vid) or bad.get(base.get(vid) or ""))
        val = (f"{r['mbps']:,.0f} ({r['mbps_min']:,.0f}–{r['mbps_max']:,.0f})" if mb
               else f"{r['rps']:,.0f} ({r['rps_min']:,.0f}–{r['rps_max']:,.0f})")
        if bad.get(vid):
            val += f" {WARN}"
        cells = [r["title"], f"{r['concurrency']} x {streams}", val,
                 f"**{_fmt(per_round.get((vid, r['concurrency'])), warn)}**", _fmt(r["ratio"], warn),
                 f"{r['per_cpu']:,.0f}" if r["per_cpu"] else "–", _fmt(r["ratio_cpu"], warn),
                 f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['srv_load']:.0%}", f"{r['wrk_load']:.0%}",
                 f"{r['foreign_load']:.0%}"]
        if rss:
            cells.append(f"{r['peak_rss'] / MiB:,.0f} MiB" if "peak_rss" in r else "–")
        cells.append(_notes(r, bad.get(vid, [])))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _notes(r: dict[str, Any], bad: list[str]) -> str:
    out = list(bad)
    if r.get("attempts", r["rounds"]) > r["rounds"]:
        out.append(f"{r['attempts'] - r['rounds']} noisy attempt(s) repeated")
    if r["saturated"]:
        out.append(f"h2load saturated {r['saturated']}/{r['rounds']}: lower bound")
    elif r["srv_load"] < 0.85 and not bad:
        out.append(f"server busy only {r['srv_load']:.0%} of the time")
    return "; ".join(out)


def headline(results: dict[str, Any]) -> list[str]:
    """asgiserve against every other server of each HTTP/2 scenario (median of per-round ratios)."""
    lines = ["| HTTP/2 scenario | asgiserve | against | its rate | asgiserve / it (median of per-round ratios) "
             "| ratio per server CPU-s | other load (median) |", "|---|---|---|---|---|---|---|"]
    for s in results["scenarios"]:
        if s["kind"] not in KINDS:
            continue
        rows = {r["variant"]: r for r in summarise(s)}
        ours = rows.get("asgiserve")
        if not ours:
            continue
        bad = problems(s)
        mb = s.get("body_bytes", 0) > 0

        def val(r: dict[str, Any]) -> str:
            return (f"{r['mbps']:,.0f} MB/s" if mb else f"{r['rps']:,.0f} req/s") + (
                f" {WARN}" if bad.get(r["variant"]) else "")

        for vid, other in rows.items():
            if vid == "asgiserve":
                continue
            ratio = round_ratios(s, against=vid).get(("asgiserve", ours["concurrency"]))
            cpu = ours["per_cpu"] / other["per_cpu"] if ours["per_cpu"] and other["per_cpu"] else None
            warn = bool(bad.get(vid) or bad.get("asgiserve"))
            sat = " (h2load saturated)" if max(ours["wrk_load"], other["wrk_load"]) >= SATURATED else ""
            lines.append(f"| {s['title']} | {val(ours)} | {other['title']} | {val(other)} | **{_fmt(ratio, warn)}**"
                         f"{sat} | {_fmt(cpu, warn)} | {ours['foreign_load']:.0%} / {other['foreign_load']:.0%} |")
    return lines if len(lines) > 2 else []


def failure_notes(results: dict[str, Any]) -> list[str]:
    """One line per server whose HTTP/2 measurements failed, for the report under the headline."""
    out = []
    for s in results["scenarios"]:
        if s["kind"] not in KINDS:
            continue
        titles = {v["id"]: v["title"] for v in s["variants"]}
        for vid, notes in problems(s).items():
            if notes:
                out.append(f"- {WARN} `{s['name']}` {titles[vid]}: " + "; ".join(notes))
    return out
