"""PNG plots (matplotlib, Agg backend): bars with min-max whiskers, and lines against concurrency."""
from __future__ import annotations

import os
from typing import Any

from .stats import summarise

GROUPS = {"asgi": ("plaintext", "plaintext-unique", "json", "starlette", "fastapi"), "wsgi": ("wsgi", "flask"),
          "bodies": ("download-1m", "upload-1m", "download-100m", "upload-100m")}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(results: dict[str, Any], names: tuple[str, ...], path: str) -> bool:
    scen = [s for s in results["scenarios"] if s["name"] in names and s["kind"] == "throughput" and s.get("rows")]
    if not scen:
        return False
    plt = _plt()
    fig, axes = plt.subplots(len(scen), 1, figsize=(9, 1.0 + 0.42 * sum(len(s["variants"]) for s in scen)
                                                      + 0.6 * len(scen)), squeeze=False)
    for ax, s in zip(axes[:, 0], scen):
        rows = summarise(s)[::-1]
        mb = bool(s.get("body_bytes"))
        key = "mbps" if mb else "rps"
        vals = [r[key] for r in rows]
        lo = [r[key] - r[key + "_min"] for r in rows]
        hi = [r[key + "_max"] - r[key] for r in rows]
        colors = ["tab:red" if r["variant"].startswith("asgiserve") else
                  "tab:gray" if r["variant"] == "limit" else "tab:blue" for r in rows]
        ax.barh([r["title"] for r in rows], vals, xerr=[lo, hi], color=colors, capsize=3)
        for i, r in enumerate(rows):
            note = f" {r['ratio']:.2f}x" if r["ratio"] is not None else ""
            if r["saturated"]:
                note += " (wrk-bound)"
            ax.text(r[key + "_max"] * 1.01, i, note, va="center", fontsize=8)  # right of the whisker
        kinds = {r["kind"] for r in rows}
        vs = "ratios: ASGI to uvicorn, WSGI to uvicorn+a2wsgi" if "wsgi" in kinds and len(kinds) > 1 else ""
        ax.set_title(f"{s['title']}: {'MB/s' if mb else 'requests/s'}, median of rounds, min-max whiskers"
                     + (f"\n{vs}" if vs else ""), fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(0, max(r[key + "_max"] for r in rows) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def sweep(s: dict[str, Any], path: str) -> bool:
    rows = summarise(s)
    if not rows:
        return False
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for v in s["variants"]:
        rs = sorted((r for r in rows if r["variant"] == v["id"]), key=lambda r: r["concurrency"])
        if not rs:
            continue
        xs = [r["concurrency"] for r in rs]
        style = "-o" if v["id"] == "async" else "--s"
        a1.errorbar(xs, [r["rps"] for r in rs], yerr=[[r["rps"] - r["rps_min"] for r in rs],
                                                      [r["rps_max"] - r["rps"] for r in rs]],
                    fmt=style, capsize=3, label=v["title"])
        a2.plot(xs, [r["p99_ms"] for r in rs], style, label=v["title"])
    if s.get("ideal_seconds"):
        ideal = s["ideal_seconds"]
        a1.plot(s["concurrency"], [c / ideal for c in s["concurrency"]], ":", color="gray",
                label=f"ideal: c / {ideal * 1000:.0f} ms")
        a2.axhline(ideal * 1000, linestyle=":", color="gray")
    for ax, title in ((a1, "throughput (requests/s)"), (a2, "p99 latency (ms)")):
        ax.set_xscale("log")
        if ax is a2 or s.get("ideal_seconds"):
            ax.set_yscale("log")
        else:  # a flat line: linear from zero, so small differences are not blown up
            ax.set_ylim(0, max(r["rps_max"] for r in rows) * 1.15)
        ax.set_xlabel("concurrent connections")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(s["concurrency"])
        ax.set_xticklabels([str(c) for c in s["concurrency"]])
    a1.legend(fontsize=8)
    fig.suptitle(s["title"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def memory(s: dict[str, Any], path: str) -> bool:
    mem = s.get("memory", [])
    if not mem:
        return False
    plt = _plt()
    titles = {v["id"]: v["title"] for v in s["variants"]}
    series = [("idle", [m["idle_rss"] for m in mem])]
    for n in s["conn_counts"]:
        series.append((f"{n:,} idle conns", [m["held"].get(str(n), {}).get("rss", 0) for m in mem]))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(series)
    for i, (label, vals) in enumerate(series):
        xs = [j + i * width for j in range(len(mem))]
        ax.bar(xs, [v / 2**20 for v in vals], width, label=label)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(mem))])
    ax.set_xticklabels([titles[m["variant"]] for m in mem], fontsize=8, rotation=15)
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(s["title"], fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


MISSING = "matplotlib is not installed: tables written, plots skipped (benchmarks/run installs the bench extra)"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(results: dict[str, Any], out_dir: str) -> dict[str, str]:
    """Returns {scenario name or group: file name relative to out_dir}; nothing without matplotlib."""
    made: dict[str, str] = {}
    if not available():
        print(MISSING, flush=True)
        return made
    for group, names in GROUPS.items():
        fname = f"throughput-{group}.png"
        if bars(results, names, os.path.join(out_dir, fname)):
            made["group:" + group] = fname
    for s in results["scenarios"]:
        fname = f"{s['name']}.png"
        if s["kind"] == "sweep" and sweep(s, os.path.join(out_dir, fname)):
            made[s["name"]] = fname
        elif s["kind"] == "memory" and memory(s, os.path.join(out_dir, fname)):
            made[s["name"]] = fname
    return made
