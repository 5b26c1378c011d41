"""Aggregate raw rounds into medians with min-max, ratios to the baseline and per-CPU-second figures."""
from __future__ import annotations

import statistics
from typing import Any, Optional

SATURATED = 0.90


def summarise(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (variant, concurrency), in the scenario's variant order."""
    rows = scenario.get("rows", [])
    body = scenario.get("body_bytes", 0)
    out = []
    for v in scenario["variants"]:
        for c in scenario["concurrency"]:
            rs = [r for r in rows if r["variant"] == v["id"] and r["concurrency"] == c]
            if not rs:
                continue
            rps = [r["requests"] / r["seconds"] for r in rs if r["seconds"]]
            per_cpu = [r["requests"] / r["server_cpu"] for r in rs if r["server_cpu"] > 0]
            wrk_load = [r["wrk_cpu"] / r["wall"] for r in rs]
            srv_load = [r["server_cpu"] / r["wall"] for r in rs]
            errors: dict[str, int] = {}
            for r in rs:
                for k, n in r["errors"].items():
                    errors[k] = errors.get(k, 0) + n
            row = {
                "variant": v["id"], "title": v["title"], "kind": v["kind"], "note": v.get("note", ""), "concurrency": c, "rounds": len(rs),
                "rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
                "per_cpu": statistics.median(per_cpu) if per_cpu else None,
                "p50_ms": statistics.median(r["latency_us"]["p50"] for r in rs) / 1000,
                "p99_ms": statistics.median(r["latency_us"]["p99"] for r in rs) / 1000,
                "srv_load": statistics.median(srv_load), "wrk_load": max(wrk_load),
                "saturated": sum(1 for x in wrk_load if x >= SATURATED), "errors": errors,
                "foreign_load": statistics.median(r.get("foreign_load", 0.0) for r in rs),
                "attempts": sum(r.get("attempts", 1) for r in rs),
            }
            if body:
                row["mbps"] = row["rps"] * body / 1e6
                row["mbps_min"], row["mbps_max"] = row["rps_min"] * body / 1e6, row["rps_max"] * body / 1e6
            if any("peak_rss" in r for r in rs):
                row["peak_rss"] = max(r["peak_rss"] for r in rs)
            out.append(row)
    _ratios(scenario, out)
    return out


def _ratios(scenario: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    base_of = scenario.get("baselines", {})
    by_key = {(r["variant"], r["concurrency"]): r for r in rows}
    for r in rows:
        base_id: Optional[str] = base_of.get(r["variant"])
        base = by_key.get((base_id, r["concurrency"])) if base_id else None
        r["baseline"] = base_id if base else None
        r["ratio"] = r["rps"] / base["rps"] if base and base["rps"] else None
        r["ratio_cpu"] = (r["per_cpu"] / base["per_cpu"]
                          if base and base.get("per_cpu") and r["per_cpu"] else None)


def round_ratios(scenario: dict[str, Any], against: Optional[str] = None) -> dict[tuple[str, int], Optional[float]]:
    """(variant, concurrency) -> median over rounds of (its rate / the other's rate in that same round).

    ``against`` names the variant to divide by (default: each variant's baseline). Each round visits every
    server back to back, so a ratio within one round compares servers under the same machine state."""
    by = {(r["variant"], r["concurrency"], r["round"]): r["requests"] / r["seconds"]
          for r in scenario.get("rows", []) if r["seconds"]}
    base_of = scenario.get("baselines", {})
    ratios: dict[tuple[str, int], list[float]] = {}
    for (vid, c, rnd), rate in by.items():
        b = by.get((against or base_of.get(vid), c, rnd))
        ratios.setdefault((vid, c), [])
        if b:
            ratios[(vid, c)].append(rate / b)
    return {k: statistics.median(v) if v else None for k, v in ratios.items()}


def round_ratio(scenario: dict[str, Any], a: str, b: str) -> Optional[float]:
    """Median over rounds of variant a's req/s over variant b's in the same round (the issue's
    'medians of per-round ratios'; the tables' ratio column is the ratio of medians)."""
    per: dict[int, dict[str, float]] = {}
    for r in scenario.get("rows", []):
        if r["variant"] in (a, b) and r["seconds"]:
            per.setdefault(r["round"], {})[r["variant"]] = r["requests"] / r["seconds"]
    ratios = [x[a] / x[b] for x in per.values() if a in x and b in x and x[b] > 0]
    return statistics.median(ratios) if ratios else None
