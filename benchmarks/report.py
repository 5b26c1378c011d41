"""Write results.md (tables) and PNG plots from the raw results dict (results.json)."""
from __future__ import annotations

import os
from typing import Any, Optional

from . import h2, ws
from .stats import round_ratio, summarise

MiB = float(1 << 20)
LOAD_SCENARIOS = ("throughput",)


def _fmt_ratio(x: Optional[float]) -> str:
    return f"{x:.2f}x" if x is not None else "–"


def _flags(r: dict[str, Any]) -> str:
    out = [r["note"]] if r.get("note") else []
    if r.get("attempts", r["rounds"]) > r["rounds"]:
        out.append(f"{r['attempts'] - r['rounds']} noisy attempt(s) repeated")
    if r["srv_load"] < 0.85 and not r["saturated"]:
        out.append(f"server busy only {r['srv_load']:.0%} of the time")
    if r["saturated"]:
        out.append(f"wrk saturated {r['saturated']}/{r['rounds']}: lower bound")
    if r["errors"]:
        out.append("errors " + ", ".join(f"{k} {n}" for k, n in r["errors"].items()))
    return "; ".join(out)


def headline(results: dict[str, Any]) -> list[str]:
    """asgiserve against the baseline of its kind, per load scenario; then, as medians of per-round
    ratios, the mypyc-compiled build against the baseline and both builds against granian."""
    lines = ["| scenario | asgiserve | baseline | ratio (req/s) | ratio (req per CPU-s) | asgiserve h11 / httptools "
             "| compiled (mypyc) / baseline | asgiserve / granian | compiled / granian |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in results["scenarios"]:
        if s["kind"] not in LOAD_SCENARIOS:
            continue
        rows = {r["variant"]: r for r in summarise(s)}
        mixed = len({v["kind"] for v in s["variants"]} - {"limit"}) > 1
        for ours_id in ("asgiserve", "asgiserve-wsgi"):
            ours = rows.get(ours_id)
            if not ours or not ours["baseline"]:
                continue
            base = rows[ours["baseline"]]
            val = (lambda r: f"{r['mbps']:,.0f} MB/s") if "mbps" in ours else (lambda r: f"{r['rps']:,.0f} req/s")
            h11 = rows.get("asgiserve-h11") if ours_id == "asgiserve" else None
            h11_ratio = _fmt_ratio(h11["rps"] / ours["rps"]) if h11 else "–"
            compiled = "asgiserve-mypyc" if ours_id == "asgiserve" else "asgiserve-wsgi-mypyc"
            granian = "granian" if ours_id == "asgiserve" else "granian-wsgi"
            peers = [_fmt_ratio(round_ratio(s, compiled, ours["baseline"])),
                     _fmt_ratio(round_ratio(s, ours_id, granian)), _fmt_ratio(round_ratio(s, compiled, granian))]
            title = s["title"] + (" (WSGI)" if mixed and ours_id == "asgiserve-wsgi" else "")
            lines.append(f"| {title} | {val(ours)} | {base['title']}: {val(base)} | **{_fmt_ratio(ours['ratio'])}**"
                         f" | {_fmt_ratio(ours['ratio_cpu'])} | {h11_ratio} | " + " | ".join(peers) + " |")
    return lines


def load_table(s: dict[str, Any]) -> list[str]:
    rows = summarise(s)
    mb = s.get("body_bytes", 0) > 0
    head = "| server | " + ("MB/s median (min–max) | " if mb else "req/s median (min–max) | ")
    limit = next((r for r in rows if r["variant"] == "limit"), None)
    head += "ratio | " + ("of limit | " if limit else "")
    head += "req per server CPU-s | ratio (CPU) | p50 ms | p99 ms | server CPU | wrk CPU | other load | "
    head += "peak RSS | notes |" if any("peak_rss" in r for r in rows) else "notes |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        val = (f"{r['mbps']:,.0f} ({r['mbps_min']:,.0f}–{r['mbps_max']:,.0f})" if mb
               else f"{r['rps']:,.0f} ({r['rps_min']:,.0f}–{r['rps_max']:,.0f})")
        per_cpu = f"{r['per_cpu']:,.0f}" if r["per_cpu"] else "–"
        cells = [r["title"], val, _fmt_ratio(r["ratio"])] + ([f"{r['rps'] / limit['rps']:.0%}"] if limit else [])
        cells += [per_cpu, _fmt_ratio(r["ratio_cpu"]),
                 f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['srv_load']:.0%}", f"{r['wrk_load']:.0%}",
                 f"{r['foreign_load']:.0%}"]
        if "peak_rss" in r:
            cells.append(f"{r['peak_rss'] / MiB:,.0f} MiB")
        cells.append(_flags(r))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sweep_table(s: dict[str, Any]) -> list[str]:
    rows = summarise(s)
    conc = s["concurrency"]
    lines = ["| variant | " + " | ".join(f"c={c}" for c in conc) + " |", "|---|" + "---|" * len(conc)]
    for v in s["variants"]:
        cells = []
        for c in conc:
            r = next((x for x in rows if x["variant"] == v["id"] and x["concurrency"] == c), None)
            if r is None:
                cells.append("–")
                continue
            err = " ⚠" if r["errors"] else ""
            cells.append(f"{r['rps']:,.0f} req/s, p99 {r['p99_ms']:,.0f} ms{err}")
        lines.append(f"| {v['title']} | " + " | ".join(cells) + " |")
    return lines


def memory_table(s: dict[str, Any]) -> list[str]:
    counts = s.get("conn_counts", [])
    lines = ["| server | idle RSS | " + " | ".join(f"{n:,} idle keep-alive conns" for n in counts)
             + " | per connection |", "|---|---|" + "---|" * len(counts) + "---|"]
    titles = {v["id"]: v["title"] for v in s["variants"]}
    for m in s.get("memory", []):
        cells = [titles[m["variant"]], f"{m['idle_rss'] / MiB:.1f} MiB"]
        for n in counts:
            h = m["held"].get(str(n)) or {}
            cells.append(f"{h['rss'] / MiB:.1f} MiB" + ("" if h["open"] == n else f" ({h['open']} still open)")
                         if "rss" in h else ("failed" if h else "–"))
        top = m["held"].get(str(counts[-1]), {}) if counts else {}
        top = top if "rss" in top else None
        cells.append(f"{(top['rss'] - m['idle_rss']) / counts[-1] / 1024:.1f} KiB" if top else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_markdown(results: dict[str, Any], out_dir: str, plots: dict[str, str]) -> str:
    meta = results["meta"]
    md = ["# asgiserve benchmark results", ""]
    md += [f"- Date: {meta['date']}  ", f"- Machine: {meta['machine']}  ",
           f"- Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}  ",
           f"- Command: `{meta['command']}`  ",
           f"- Method: {meta['method']}  ",
           f"- Load average before/after: {meta['loadavg_before']} / {meta.get('loadavg_after', '?')}  ",
           f"- Total run time: {meta.get('total_seconds', 0) / 60:.1f} min", ""]
    if meta.get("failures"):
        md += ["**Failures:** " + "; ".join(f"{k}: {v.strip().splitlines()[-1] if v.strip() else '?'}"
                                            for k, v in meta["failures"].items()), ""]
    hl = headline(results)
    if len(hl) > 2:
        md += ["## Headline: asgiserve / baseline (uvicorn httptools+uvloop; uvicorn+a2wsgi for WSGI)", ""] + hl + [""]
    wl = ws.headline(results)
    if wl:
        md += ["## Headline: WebSockets, asgiserve / uvicorn (httptools+uvloop, its default --ws auto)", ""] + wl + [""]
    hl2 = h2.headline(results)
    if hl2:
        md += ["## Headline: HTTP/2 (h2c, h2load), asgiserve / each other server", ""] + hl2 + [""]
        md += h2.failure_notes(results) + [""]
    for key, fname in plots.items():
        if key.startswith("group:"):
            md += [f"![{key[6:]} throughput]({fname})", ""]
    for s in results["scenarios"]:
        md += [f"## {s['title']} (`{s['name']}`)", ""]
        if s["kind"] == "throughput":
            target = s["path"] + ("?n=<counter>" if s.get("unique_targets") else "")
            md += [f"`{s.get('method', 'GET')} {target}`, {s['concurrency'][0]} keep-alive connections."
                   + (f" {s['notes']}." if s.get("notes") else ""), ""]
            md += load_table(s)
        elif s["kind"] == "sweep":
            md += sweep_table(s)
        elif s["kind"] == "ws":
            md += [f"WebSocket `ws://.../`, {' and '.join(str(c) for c in s['concurrency'])} connections. "
                   f"{s['notes']}.", ""] + ws.echo_table(s)
        elif s["kind"] == "ws-memory":
            md += ws.memory_table(s)
        elif s["kind"] == "h2":
            md += [f"h2c (prior knowledge) `GET {s['path']}`, {s['concurrency'][0]} connection(s) x "
                   f"{s.get('h2_streams', 0)} concurrent streams, h2load -D. {s['notes']}. Ratios to uvicorn "
                   f"(--http zttp --http2).", ""] + h2.table(s)
        else:
            md += memory_table(s)
        if s["name"] in plots:
            md += ["", f"![{s['title']}]({plots[s['name']]})"]
        md.append("")
    path = os.path.join(out_dir, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(md))
    return path
