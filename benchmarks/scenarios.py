"""The scenarios: what is served, by whom, how it is loaded, and what each number is compared against."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from .servers import SERVERS, Opts

A = "benchmarks.apps."
JSON_BODY = '{"message": "Hello, world!"}'
JSON_OPTS = Opts(limit_body=JSON_BODY, limit_type="application/json")
MIB = 1 << 20

ASGI_SERVERS = ("asgiserve", "asgiserve-mypyc", "asgiserve-h11", "uvicorn", "uvicorn-h11", "hypercorn", "granian", "limit")
HTTPS_SERVERS = ("asgiserve", "uvicorn", "hypercorn", "granian")
WSGI_SERVERS = ("asgiserve-wsgi", "asgiserve-wsgi-mypyc", "gunicorn-sync", "gunicorn-gthread", "uvicorn-a2wsgi", "granian-wsgi")
BODY_SERVERS = ("asgiserve", "asgiserve-mypyc", "uvicorn", "hypercorn", "granian",
                "asgiserve-wsgi", "uvicorn-a2wsgi", "gunicorn-gthread", "granian-wsgi")
BIG_BODY_SERVERS = ("asgiserve", "asgiserve-mypyc", "uvicorn", "granian", "asgiserve-wsgi", "uvicorn-a2wsgi", "gunicorn-gthread")
BASELINES = {"asgi": "uvicorn", "limit": "uvicorn", "wsgi": "uvicorn-a2wsgi"}
H2_SERVERS = ("asgiserve", "uvicorn-zttp", "hypercorn", "granian", "gunicorn-asgi")
H2_APP = A + "h2_bench:app"
H2_OPTS = Opts(h2=True)
WS_APP = A + "ws_bench:app"
KIB = 1 << 10


@dataclass(frozen=True)
class Variant:
    """One server instance in a scenario (a sweep can run one server several times, e.g. per pool size)."""

    id: str
    server: str
    app: str
    opts: Opts = Opts()
    path: Optional[str] = None
    label: Optional[str] = None

    @property
    def kind(self) -> str:
        return SERVERS[self.server].kind

    @property
    def title(self) -> str:
        return self.label or SERVERS[self.server].label


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    kind: str  # "throughput" | "sweep" | "memory" | "ws" (WebSocket echo) | "ws-memory" | "h2" (h2load)
    variants: tuple[Variant, ...]
    path: str = "/"
    concurrency: tuple[int, ...] = (64,)
    post_bytes: int = 0  # request body size (POST) if any
    body_bytes: int = 0  # bytes per request that count for MB/s (0: report req/s only)
    peak_rss: bool = False
    timeout_s: float = 10.0
    conn_counts: tuple[int, ...] = ()  # memory scenario: idle connection counts
    max_rounds: Optional[int] = None  # sweeps: bounded by sleeps, not noise, so fewer rounds suffice
    unique_targets: bool = False  # a different request target each request (no identical heads)
    min_duration: int = 0  # a sweep whose queues take seconds to fill needs a longer window
    ideal_seconds: float = 0.0  # sweep plots: the c / t line a perfectly concurrent server would reach
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    ws_bytes: int = 0  # WebSocket echo: message size
    ws_binary: bool = False  # binary frames (else text)
    h2_streams: int = 0  # HTTP/2: concurrent streams per connection (concurrency counts connections)
    baseline: Optional[str] = None  # the variant every ratio is to, when not the kind's usual one

    def baseline_for(self, v: Variant) -> Optional[str]:
        want = self.baseline or BASELINES.get(v.kind)
        return want if any(x.id == want for x in self.variants) else None


def _by_app(servers: tuple[str, ...], asgi: str, wsgi: str = "", opts: Opts = Opts()) -> tuple[Variant, ...]:
    out = []
    for name in servers:
        kind = SERVERS[name].kind
        app = wsgi if kind == "wsgi" else asgi
        out.append(Variant(name, name, app, opts))
    return tuple(out)


def _sweep_variants(async_path: str, sync_path: str, pools: tuple[int, ...]) -> tuple[Variant, ...]:
    app = A + "sync_async:"
    out = [Variant("async", "asgiserve", app + "app", path=async_path, label="async (asgiserve ASGI)")]
    for n in pools:
        out.append(Variant(f"sync-{n}", "asgiserve-wsgi", app + "wsgi_app", Opts(threads=n), path=sync_path,
                           label=f"sync, {n} threads (asgiserve WSGI)"))
    return tuple(out)


def _ws_variants(opts: Opts = Opts()) -> tuple[Variant, ...]:
    """The WebSocket servers: each with its defaults, uvicorn with its default backend and with wsproto."""
    from .wsload import uvicorn_ws_auto

    o = replace(opts, ws="auto")
    return (Variant("asgiserve", "asgiserve", WS_APP, o),
            Variant("uvicorn", "uvicorn", WS_APP, o,
                    label=f"uvicorn (httptools+uvloop, --ws auto = {uvicorn_ws_auto()})"),
            Variant("uvicorn-wsproto", "uvicorn", WS_APP, replace(o, ws="wsproto"),
                    label="uvicorn (httptools+uvloop, --ws wsproto)"),
            Variant("hypercorn", "hypercorn", WS_APP, o, label="hypercorn (uvloop, wsproto)"),
            Variant("granian", "granian", WS_APP, o, label="granian (asgi, WebSockets on)"))


def _h2_variants(unlimited_hypercorn: bool = False) -> tuple[Variant, ...]:
    """The HTTP/2 servers, h2c with prior knowledge. hypercorn's defaults end a connection after 1,000
    requests (keep_alive_max_requests, settable only in a config file); where one connection would pass
    that within a measurement, it also runs with the limit out of the way."""
    out = list(_by_app(H2_SERVERS, H2_APP, opts=H2_OPTS))
    if unlimited_hypercorn:
        out.insert(3, Variant("hypercorn-unlimited", "hypercorn", H2_APP, Opts(h2=True, conn_max_requests=10**9),
                              label="hypercorn (uvloop, keep_alive_max_requests 10^9)"))
    return tuple(out)


def all_scenarios() -> list[Scenario]:
    raw = A + "asgi_raw:app"
    bodies = (A + "bodies:app", A + "bodies:wsgi_app")
    return [
        Scenario("plaintext", "Raw ASGI plaintext", "throughput", _by_app(ASGI_SERVERS, raw)),
        Scenario("plaintext-unique", "Raw ASGI plaintext, a different target per request", "throughput",
                 _by_app(("asgiserve", "asgiserve-h11", "uvicorn", "uvicorn-h11", "granian"), raw),
                 unique_targets=True,
                 notes="wrk's Lua request() makes every head unique (/?n=1, /?n=2, ...): no per-connection "
                       "reuse of an identical previous head can help, and wrk itself works harder"),
        Scenario("https-plaintext", "Raw ASGI plaintext over HTTPS (TLS 1.3, keep-alive, one certificate)",
                 "throughput", _by_app(HTTPS_SERVERS, raw, opts=Opts(tls=True))),
        Scenario("json", "Raw ASGI JSON", "throughput", _by_app(ASGI_SERVERS, raw, opts=JSON_OPTS), path="/json"),
        Scenario("starlette", "Starlette route", "throughput", _by_app(ASGI_SERVERS, A + "starlette_app:app")),
        Scenario("fastapi", "FastAPI route", "throughput",
                 _by_app(ASGI_SERVERS, A + "fastapi_app:app", opts=JSON_OPTS)),
        Scenario("wsgi", "Raw WSGI hello world", "throughput", _by_app(WSGI_SERVERS, "", A + "wsgi_raw:app")),
        Scenario("flask", "Flask hello world", "throughput", _by_app(WSGI_SERVERS, "", A + "flask_app:app")),
        Scenario("sync-async", "Sync vs async: 50 ms of I/O per request", "sweep",
                 _sweep_variants("/async", "/sync", (8, 32, 128)), concurrency=(1, 10, 50, 100, 200, 500),
                 timeout_s=30.0, max_rounds=2, min_duration=5, ideal_seconds=0.05),
        Scenario("cpu-bound", "CPU-bound handler (~5 ms of pure Python per request)", "sweep",
                 _sweep_variants("/cpu", "/cpu", (8, 32)), concurrency=(1, 10, 50), timeout_s=30.0, max_rounds=2),
        Scenario("download-1m", "1 MiB streamed download", "throughput", _by_app(BODY_SERVERS, *bodies),
                 path="/download/1m", concurrency=(8,), body_bytes=MIB, peak_rss=True),
        Scenario("upload-1m", "1 MiB upload, echoed", "throughput", _by_app(BODY_SERVERS, *bodies),
                 path="/upload", concurrency=(8,), post_bytes=MIB, body_bytes=MIB, peak_rss=True),
        Scenario("download-100m", "100 MiB streamed download", "throughput", _by_app(BIG_BODY_SERVERS, *bodies),
                 path="/download/100m", concurrency=(2,), body_bytes=100 * MIB, peak_rss=True, timeout_s=30.0),
        Scenario("upload-100m", "100 MiB upload, echoed", "throughput", _by_app(BIG_BODY_SERVERS, *bodies),
                 path="/upload", concurrency=(2,), post_bytes=100 * MIB, body_bytes=100 * MIB, peak_rss=True,
                 timeout_s=30.0),
        Scenario("memory", "Server RSS: idle, and holding idle keep-alive connections", "memory",
                 _by_app(("asgiserve", "asgiserve-h11", "uvicorn", "hypercorn", "granian", "limit"), raw,
                         opts=Opts(keep_alive=600.0)), conn_counts=(1000, 10000)),
        Scenario("ws-echo-16b", "WebSocket echo, 16-byte text messages", "ws", _ws_variants(),
                 concurrency=(1, 64), ws_bytes=16,
                 notes="Each connection sends one message and awaits its echo, in a loop; no compression offered"),
        Scenario("ws-echo-64k", "WebSocket echo, 64 KiB binary messages", "ws", _ws_variants(),
                 concurrency=(1, 64), ws_bytes=64 * KIB, ws_binary=True, body_bytes=64 * KIB,
                 notes="Each connection sends one message and awaits its echo, in a loop; no compression offered"),
        Scenario("ws-memory", "Server RSS holding 10,000 idle WebSockets (and, for comparison, keep-alive "
                 "connections)", "ws-memory", _ws_variants(Opts(keep_alive=600.0)), conn_counts=(10000,)),
        Scenario("h2-plaintext-1x100", "HTTP/2 plaintext (h2c), 1 connection x 100 streams", "h2",
                 _h2_variants(unlimited_hypercorn=True), concurrency=(1,), h2_streams=100, baseline="uvicorn-zttp",
                 notes="h2load -c1 -m100, 13-byte responses"),
        Scenario("h2-plaintext-64x10", "HTTP/2 plaintext (h2c), 64 connections x 10 streams", "h2", _h2_variants(),
                 concurrency=(64,), h2_streams=10, baseline="uvicorn-zttp",
                 notes="h2load -c64 -m10, 13-byte responses"),
        Scenario("h2-download-1m", "HTTP/2 1 MiB download (h2c), 4 connections x 4 streams", "h2", _h2_variants(),
                 path="/big", concurrency=(4,), h2_streams=4, body_bytes=MIB, peak_rss=True, baseline="uvicorn-zttp",
                 notes="h2load -c4 -m4; the body is one 1 MiB ASGI message, so flow control paces it"),
    ]


QUICK_SERVERS = ("asgiserve", "uvicorn", "uvicorn-zttp", "granian", "limit", "asgiserve-wsgi", "uvicorn-a2wsgi",
                 "gunicorn-gthread")


def quick(s: Scenario, headline_only: bool = True) -> Scenario:
    """The --quick cut of a scenario: the headline servers, fewer sweep points and connection counts."""
    if s.kind == "sweep":
        conc = tuple(c for c in s.concurrency if c in (1, 50, 500)) or s.concurrency[:2]
        keep = {"async", "sync-8", f"sync-{max(int(v.id[5:]) for v in s.variants if v.id.startswith('sync-'))}"}
        return replace(s, concurrency=conc, variants=tuple(v for v in s.variants if v.id in keep))
    variants = tuple(v for v in s.variants if v.server in QUICK_SERVERS or not headline_only)
    if s.kind == "memory":
        return replace(s, conn_counts=s.conn_counts[:1], variants=variants)
    if s.kind == "ws-memory":
        return replace(s, conn_counts=(1000,), variants=variants)
    return replace(s, variants=variants)


def select(names: list[str], servers: list[str], is_quick: bool) -> list[Scenario]:
    """Scenarios by name (all if none), narrowed to the given servers (a sweep matches on server name)."""
    known = {s.name: s for s in all_scenarios()}
    # A prefix names a family: `ws-echo` is ws-echo-16b and ws-echo-64k, `ws` every WebSocket scenario.
    names = [m for n in names for m in ([n] if n in known else [k for k in known if k.startswith(n + "-")] or [n])]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    bad = [n for n in servers if n not in SERVERS]
    if bad:
        raise SystemExit(f"unknown server(s): {', '.join(bad)}; known: {', '.join(SERVERS)}")
    out = []
    for s in (known[n] for n in names) if names else known.values():
        if is_quick:
            s = quick(s, headline_only=not servers)
        if servers:
            s = replace(s, variants=tuple(v for v in s.variants if v.server in servers or v.id in servers))
        if s.variants:
            out.append(s)
    return out
