"""The live page on the --metrics listener (``/``): one HTML file, no external assets.

It fetches ``/metrics.json`` every second and computes what a person watches from the counters,
the way PromQL would: rates from differences, p50/p99 from histogram buckets (linear inside a
bucket, as ``histogram_quantile`` does) over the last WINDOW seconds, so a worker's snapshot
arriving a little late does not make the lines jump. Charts keep the last two minutes.
"""
from __future__ import annotations

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>asgiserve: live figures</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{display:flex;align-items:baseline;gap:16px;padding:12px 20px;background:#1d2330;color:#fff}
header h1{font-size:17px;margin:0;font-weight:600} header span{color:#aab3c5;font-size:13px}
main{padding:14px 20px;display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:14px}
.card{background:#fff;border:1px solid #e1e5ec;border-radius:8px;padding:10px 12px}
.card h2{font-size:12px;font-weight:600;color:#5b6578;margin:0 0 6px;text-transform:uppercase;letter-spacing:.04em}
.tiles{grid-column:1/-1;display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.tile{background:#fff;border:1px solid #e1e5ec;border-radius:8px;padding:8px 12px}
.tile b{display:block;font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.tile small{color:#5b6578}
canvas{width:100%;height:170px;display:block}
.legend{font-size:12px;color:#5b6578;margin-top:4px} .legend i{display:inline-block;width:10px;height:3px;margin:0 4px 3px 10px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums} .wide{grid-column:1/-1}
th,td{text-align:right;padding:4px 8px;border-bottom:1px solid #eef0f4} th{color:#5b6578;font-weight:600;font-size:12px}
th:first-child,td:first-child{text-align:left} .err{color:#b42318}
</style></head><body>
<header><h1>asgiserve &middot; live figures</h1><span id="mode"></span><span id="status">connecting&hellip;</span></header>
<main>
<div class="tiles" id="tiles"></div>
<div class="card"><h2>Requests per second</h2><canvas id="c_rate"></canvas><div class="legend" id="l_rate"></div></div>
<div class="card"><h2>Latency p50 / p99 (log scale)</h2><canvas id="c_lat"></canvas><div class="legend" id="l_lat"></div></div>
<div class="card"><h2>Event loop lag p99 (log scale)</h2><canvas id="c_lag"></canvas><div class="legend" id="l_lag"></div></div>
<div class="card"><h2>WSGI pool: busy threads of the pool size</h2><canvas id="c_busy"></canvas><div class="legend" id="l_busy"></div></div>
<div class="card"><h2>WSGI requests queued for a thread</h2><canvas id="c_queue"></canvas><div class="legend" id="l_queue"></div></div>
<div class="card"><h2>WSGI queue wait p50 / p99 (log scale)</h2><canvas id="c_wait"></canvas><div class="legend" id="l_wait"></div></div>
<div class="card wide"><h2>Per worker</h2><table id="workers"></table></div>
</main>
<script>
"use strict";
const WINDOW = 3, KEEP = 120, COLORS = {asgi3: "#2563eb", asgi2: "#0d9488", wsgi: "#ea580c"};
const samples = [], series = {};
function push(name, t, v) { (series[name] = series[name] || []).push([t, v]); while (series[name].length > KEEP) series[name].shift(); }
function diff(a, b) { return a.map((x, i) => x - ((b && b[i]) || 0)); }
function quantile(q, bounds, counts) {
  const total = counts.reduce((a, b) => a + b, 0); if (total <= 0) return null;
  let rank = q * total, cum = 0;
  for (let i = 0; i < counts.length; i++) {
    if (cum + counts[i] >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lo = i ? bounds[i - 1] : 0; return lo + (bounds[i] - lo) * (counts[i] ? (rank - cum) / counts[i] : 0);
    }
    cum += counts[i];
  }
  return bounds[bounds.length - 1];
}
function ms(s) { if (s == null) return "\\u2013"; s *= 1000; return s < 1 ? s.toFixed(2) + " ms" : s < 1000 ? s.toFixed(s < 10 ? 1 : 0) + " ms" : (s / 1000).toFixed(2) + " s"; }
function num(x) { return x == null ? "\\u2013" : Number.isInteger(x) || x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(1); }
function niceMax(v) { const p = Math.pow(10, Math.floor(Math.log10(v))); return [1, 2, 2.5, 5, 10].find(m => m * p >= v) * p; }
function hist(d) { return d ? d.slice(0, -1) : null; }
function older(now) { for (let i = samples.length - 1; i >= 0; i--) if (now.time - samples[i].time >= WINDOW - 0.25) return samples[i]; return samples[0]; }
function byWorker(s) { const m = {}; for (const w of s.workers) m[w.worker] = w; return m; }
function lagOf(b, cur, prev) { const h = diff(hist(cur.lag) || [], hist(prev && prev.pid === cur.pid ? prev.lag : null)); return quantile(0.99, b.lag, h); }

function figures(cur, prev, b) {
  const dt = Math.max(0.001, cur.time - prev.time), f = {iface: {}};
  for (const name of Object.keys(cur.combined.requests || {})) {
    const n = cur.combined.requests[name].reduce((a, x) => a + x, 0), p = ((prev.combined.requests || {})[name] || []).reduce((a, x) => a + x, 0);
    const h = diff(hist(cur.combined.duration[name]), hist((prev.combined.duration || {})[name]));
    f.iface[name] = {rate: Math.max(0, n - p) / dt, p50: quantile(0.5, b.duration, h), p99: quantile(0.99, b.duration, h)};
  }
  const w = diff(hist(cur.combined.wait) || [], hist(prev.combined.wait));
  f.wait50 = quantile(0.5, b.wait, w); f.wait99 = quantile(0.99, b.wait, w);
  const pw = byWorker(prev); f.workers = cur.workers.map(x => {
    const old = pw[x.worker] && pw[x.worker].pid === x.pid ? pw[x.worker] : null;
    const tot = o => Object.values(o ? o.requests : {}).reduce((a, c) => a + c.reduce((s, v) => s + v, 0), 0);
    let d = null; for (const k of Object.keys(x.duration)) { const h = diff(hist(x.duration[k]), old && old.duration[k] ? hist(old.duration[k]) : null); d = d ? d.map((v, i) => v + h[i]) : h; }
    return {w: x, rate: Math.max(0, tot(x) - tot(old)) / dt, p50: d && quantile(0.5, b.duration, d), p99: d && quantile(0.99, b.duration, d), lag: lagOf(b, x, old)};
  });
  f.lag = Math.max(0, ...f.workers.map(x => x.lag || 0));
  return f;
}

function tile(label, value, note) { return `<div class="tile"><small>${label}</small><b>${value}</b><small>${note || ""}</small></div>`; }
function render(cur, f) {
  const c = cur.combined, pool = c.pool, t = cur.time, tiles = [];
  for (const [name, x] of Object.entries(f.iface)) {
    tiles.push(tile(`${name} requests/s`, num(x.rate), `p50 ${ms(x.p50)} &middot; p99 ${ms(x.p99)}`));
    push("rate " + name, t, x.rate); push("p50 " + name, t, x.p50); push("p99 " + name, t, x.p99);
  }
  tiles.push(tile("in flight", num(c.in_flight), `${num(c.http)} HTTP &middot; ${num(c.websocket)} WebSocket conns`));
  if (pool) {
    tiles.push(tile("WSGI pool busy", `${pool[1]} / ${pool[0]}`, pool[1] >= pool[0] ? "saturated" : "threads"));
    tiles.push(tile("WSGI queued", num(pool[2]), `wait p50 ${ms(f.wait50)} &middot; p99 ${ms(f.wait99)}`));
    push("busy", t, pool[1]); push("size", t, pool[0]); push("queued", t, pool[2]); push("wait p50", t, f.wait50); push("wait p99", t, f.wait99);
  }
  tiles.push(tile("event loop lag p99", ms(f.lag), `worst of ${cur.workers.length} worker(s)`));
  const r = cur.restarts, restarts = Object.values(r).reduce((a, b) => a + b, 0);
  if (cur.mode === "supervisor") tiles.push(tile("worker restarts", restarts, Object.entries(r).filter(e => e[1]).map(e => e.join(" ")).join(", ")));
  for (const x of f.workers) push("lag " + x.w.worker, t, x.lag);
  document.getElementById("tiles").innerHTML = tiles.join("");
  const names = Object.keys(f.iface);
  chart("rate", names.map(n => ({label: n, color: COLORS[n], data: series["rate " + n]})), {});
  chart("lat", names.flatMap(n => [{label: n + " p99", color: COLORS[n], data: series["p99 " + n]}, {label: n + " p50", color: COLORS[n], dash: [4, 3], data: series["p50 " + n]}]), {log: true, time: true});
  chart("lag", f.workers.map((x, i) => ({label: "worker " + x.w.worker, color: ["#7c3aed", "#db2777", "#059669", "#ca8a04"][i % 4], data: series["lag " + x.w.worker]})), {log: true, time: true});
  if (pool) {
    chart("busy", [{label: "busy", color: COLORS.wsgi, data: series.busy, fill: true}, {label: "pool size", color: "#5b6578", dash: [4, 3], data: series.size}], {});
    chart("queue", [{label: "queued", color: "#b42318", data: series.queued, fill: true}], {});
    chart("wait", [{label: "p99", color: "#b42318", data: series["wait p99"]}, {label: "p50", color: "#b42318", dash: [4, 3], data: series["wait p50"]}], {log: true, time: true});
  }
  const rows = f.workers.map(x => { const s = x.w, p = s.pool; return `<tr><td>${s.worker}</td><td>${s.pid}</td><td>${num(x.rate)}</td><td>${ms(x.p50)}</td><td>${ms(x.p99)}</td><td>${s.in_flight}</td><td>${s.http}</td><td>${s.websocket}</td><td>${p ? p[1] + " / " + p[0] : "\\u2013"}</td><td>${p ? p[2] : "\\u2013"}</td><td>${ms(x.lag)}</td></tr>`; });
  document.getElementById("workers").innerHTML = "<tr><th>worker</th><th>pid</th><th>req/s</th><th>p50</th><th>p99</th><th>in flight</th><th>HTTP conns</th><th>WS conns</th><th>pool busy</th><th>queued</th><th>loop lag p99</th></tr>" + rows.join("");
}

function chart(id, lines, opt) {
  const cv = document.getElementById("c_" + id), dpr = window.devicePixelRatio || 1, W = cv.clientWidth, H = cv.clientHeight;
  cv.width = W * dpr; cv.height = H * dpr; const g = cv.getContext("2d"); g.scale(dpr, dpr); g.font = "11px system-ui,sans-serif";
  const pts = lines.flatMap(l => (l.data || []).filter(p => p[1] != null)), L = 52, R = 8, T = 8, B = 18;
  const tmax = samples.length ? samples[samples.length - 1].time : 0, tmin = Math.max(tmax - KEEP, samples.length ? samples[0].time : 0);
  let lo, hi, y;
  if (opt.log) {
    const vals = pts.map(p => Math.max(p[1], 1e-4)); lo = Math.pow(10, Math.floor(Math.log10(Math.min(...vals, 1e-3)))); hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals, 1e-2) * 1.01)));
    y = v => T + (H - T - B) * (1 - (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)));
  } else {
    lo = 0; hi = niceMax(Math.max(1, ...pts.map(p => p[1])) * 1.1); y = v => T + (H - T - B) * (1 - v / hi);
  }
  const x = t => L + (W - L - R) * (t - tmin) / (tmax - tmin || 1);
  g.strokeStyle = "#eef0f4"; g.fillStyle = "#5b6578"; g.textAlign = "right";
  const ticks = opt.log ? Array.from({length: Math.round(Math.log10(hi / lo)) + 1}, (_, i) => lo * Math.pow(10, i)) : [0, hi / 2, hi];
  for (const v of ticks) { g.beginPath(); g.moveTo(L, y(v)); g.lineTo(W - R, y(v)); g.stroke(); g.fillText(opt.time ? ms(v) : num(v), L - 4, y(v) + 4); }
  for (let s = 0; s <= tmax - tmin; s += tmax - tmin > 60 ? 30 : 15) { g.textAlign = s ? "center" : "right"; g.fillText(s ? `-${s}s` : "now", x(tmax - s), H - 4); }
  for (const l of lines) {
    const d = (l.data || []).filter(p => p[1] != null && p[0] >= tmin); if (!d.length) continue;
    g.strokeStyle = l.color; g.lineWidth = 2; g.setLineDash(l.dash || []); g.beginPath();
    d.forEach((p, i) => i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))); g.stroke(); g.setLineDash([]);
    if (l.fill) { g.lineTo(x(d[d.length - 1][0]), y(lo)); g.lineTo(x(d[0][0]), y(lo)); g.closePath(); g.globalAlpha = 0.12; g.fillStyle = l.color; g.fill(); g.globalAlpha = 1; }
  }
  document.getElementById("l_" + id).innerHTML = lines.map(l => `<i style="background:${l.color}"></i>${l.label}`).join("");
}

async function tick() {
  try {
    const res = await fetch("metrics.json", {cache: "no-store"}), cur = await res.json();
    samples.push(cur); while (samples.length > KEEP + WINDOW + 2) samples.shift();
    document.getElementById("mode").textContent = cur.mode === "supervisor" ? `supervisor, ${cur.workers.length} worker(s)` : "single process";
    document.getElementById("status").textContent = "updated " + new Date(cur.time * 1000).toLocaleTimeString();
    if (samples.length > 1) render(cur, figures(cur, older(cur), cur.buckets));
  } catch (e) { document.getElementById("status").innerHTML = `<span class="err">${e}</span>`; }
}
tick(); setInterval(tick, 1000);
</script></body></html>
"""
