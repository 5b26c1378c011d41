"""One typed, frozen configuration object.

Every option is declared exactly once, here, as a dataclass field whose metadata carries
its command-line spelling and help text. The click CLI, the ``ASGISERVE_<NAME>`` environment
variables and ``asgiserve.run(**options)`` are all generated from these fields, so a flag
can never exist in one place and be missing in another.

Config holds plain values only (no sockets, loaded apps or loggers) so it pickles to worker
processes; validation raises ConfigError and never exits.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from .errors import ConfigError

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")  # controls, or not latin-1

CERT_REQS_CHOICES = ("none", "optional", "required", "0", "1", "2")  # uvicorn passes ssl.CERT_* integers
TLS_VERSIONS = ("1.2", "1.3")
LOOP_CHOICES = ("auto", "asyncio", "uvloop")
HTTP_CHOICES = ("auto", "httptools", "h11")
LIFESPAN_CHOICES = ("auto", "on", "off")
INTERFACE_CHOICES = ("auto", "asgi3", "asgi2", "wsgi")
# uvicorn's values are accepted so its command lines keep working; every one but "none" means
# websockets' sans-I/O protocol (uvicorn's own default backend since 0.35).
WS_CHOICES = ("auto", "websockets", "websockets-sansio", "wsproto", "none")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def opt(
    default: Any,
    help: str,
    *flags: str,
    choices: tuple[str, ...] | None = None,
    multiple: bool = False,
    is_flag: bool = False,
    secondary: str | None = None,
    metavar: str | None = None,
    cli: bool = True,
    env: str | None = None,
) -> Any:
    """Declare an option: its default plus how the CLI spells it.

    ``flags`` are the click spellings ("-b", "--bind"); by default "--field-name".
    ``secondary`` gives the off switch of a boolean ("--no-access-log").
    ``env`` names an extra environment variable honoured besides ASGISERVE_<NAME>
    (e.g. WEB_CONCURRENCY, FORWARDED_ALLOW_IPS, which gunicorn/uvicorn users already set).
    """
    meta = {
        "help": help,
        "flags": flags,
        "choices": choices,
        "multiple": multiple,
        "is_flag": is_flag,
        "secondary": secondary,
        "metavar": metavar,
        "cli": cli,
        "env": env,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults; Config is immutable")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """Everything a server (or a supervisor and its workers) needs to know."""

    # -- the application -------------------------------------------------------------
    app: Union[str, Callable[..., Any], None] = opt(
        None, "The app to serve, as 'module:attribute' (or an ASGI/WSGI callable).", cli=False
    )
    factory: bool = opt(False, "Treat APP as a factory: call it with no arguments to get the app.", is_flag=True)
    app_dir: str = opt(".", "Directory added to sys.path before importing APP.", metavar="DIR")
    interface: str = opt(
        "auto", "Application interface. auto tells ASGI 3, ASGI 2 and WSGI apart.", choices=INTERFACE_CHOICES
    )

    # -- where to listen -------------------------------------------------------------
    bind: tuple[str, ...] = opt(
        (),
        "Address to listen on, repeatable: HOST:PORT, [::1]:PORT, unix:PATH, fd://N. "
        "Default 127.0.0.1:8000.",
        "-b",
        "--bind",
        multiple=True,
        metavar="ADDRESS",
    )
    host: Optional[str] = opt(None, "Bind to this host (uvicorn spelling; default 127.0.0.1).", metavar="HOST")
    port: Optional[int] = opt(None, "Bind to this port (uvicorn spelling; default 8000; 0 picks a free one).")
    uds: Optional[str] = opt(None, "Bind to a unix domain socket at this path.", metavar="PATH")
    fd: Optional[int] = opt(None, "Serve on an already-open listening socket file descriptor.")
    umask: Optional[int] = opt(
        None, "umask (octal, e.g. 007) applied while creating unix sockets and files.", "-m", "--umask",
        metavar="OCTAL",
    )
    backlog: int = opt(2048, "Maximum number of pending connections (listen backlog).")
    reuse_port: bool = opt(False, "Set SO_REUSEPORT on TCP sockets.", is_flag=True)

    # -- TLS -------------------------------------------------------------------------
    ssl_certfile: Optional[str] = opt(
        None, "TLS certificate chain (PEM). With it, TCP binds serve HTTPS.", "--ssl-certfile", "--certfile",
        metavar="FILE",
    )
    ssl_keyfile: Optional[str] = opt(
        None, "TLS private key (PEM); default: in the certificate file.", "--ssl-keyfile", "--keyfile",
        metavar="FILE",
    )
    ssl_keyfile_password: Optional[str] = opt(None, "Password of an encrypted private key.", metavar="PASSWORD")
    ssl_ca_certs: Optional[str] = opt(
        None, "CA certificates (PEM) to verify client certificates with.", "--ssl-ca-certs", "--ca-certs",
        metavar="FILE",
    )
    ssl_cert_reqs: str = opt(
        "none", "Client certificates: none, optional (verified when sent) or required (uvicorn's 0/1/2 too).",
        "--ssl-cert-reqs", "--cert-reqs", choices=CERT_REQS_CHOICES,
    )
    ssl_ciphers: Optional[str] = opt(
        None, "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's).", "--ssl-ciphers", "--ciphers", metavar="CIPHERS"
    )
    ssl_min_version: str = opt("1.2", "Lowest TLS version accepted.", choices=TLS_VERSIONS)
    ssl_handshake_timeout: Optional[float] = opt(
        None, "Seconds a client may take to complete the TLS handshake before it is dropped "
        "(default: --timeout-request-header)."
    )

    # -- protocol implementation -----------------------------------------------------
    loop: str = opt("auto", "Event loop. auto uses uvloop when it is installed.", choices=LOOP_CHOICES)
    http: str = opt("auto", "HTTP parser. auto uses httptools when it is installed.", choices=HTTP_CHOICES)
    lifespan: str = opt("auto", "ASGI lifespan protocol.", choices=LIFESPAN_CHOICES)
    lifespan_startup_timeout: float = opt(60.0, "Seconds the app may take to finish lifespan startup.")
    lifespan_shutdown_timeout: float = opt(30.0, "Seconds the app may take to finish lifespan shutdown.")

    # -- HTTP behaviour --------------------------------------------------------------
    root_path: str = opt("", "ASGI root_path: the URL prefix the app is mounted under.", metavar="PATH")
    proxy_headers: bool = opt(
        True,
        "Trust X-Forwarded-For/-Proto and Forwarded from --forwarded-allow-ips.",
        is_flag=True,
        secondary="--no-proxy-headers",
    )
    forwarded_allow_ips: str = opt(
        "127.0.0.1",
        "Comma-separated IPs or CIDRs (or '*') whose proxy headers are trusted.",
        env="FORWARDED_ALLOW_IPS",
        metavar="IPS",
    )
    server_header: bool = opt(True, "Send 'Server: asgiserve'.", is_flag=True, secondary="--no-server-header")
    date_header: bool = opt(True, "Send a Date header.", is_flag=True, secondary="--no-date-header")
    headers: tuple[str, ...] = opt(
        (), "Extra default response header, repeatable, as 'Name: value'.", "--header", multiple=True,
        metavar="NAME:VALUE",
    )
    timeout_keep_alive: float = opt(
        5.0, "Close idle keep-alive connections after this many seconds.", "--timeout-keep-alive", "--keep-alive"
    )
    timeout_request_header: float = opt(
        10.0, "Seconds a request head may take to arrive, from its first byte (from the accept for a "
        "connection's first request); then 408 and close."
    )
    timeout_request_body: float = opt(
        60.0, "Seconds a request body may go without a byte arriving while the server is ready to read it; "
        "then 408 (or a close, once the response started). 0: no limit."
    )
    timeout_graceful_shutdown: float = opt(
        30.0, "On shutdown, seconds in-flight requests get to finish before they are cancelled.",
        "--timeout-graceful-shutdown", "--graceful-timeout",
    )
    limit_concurrency: Optional[int] = opt(
        None, "Answer 503 (with Retry-After) beyond this many in-flight requests and open WebSockets."
    )
    limit_connections: Optional[int] = opt(
        None, "Open connections per process; beyond it the process stops accepting (idle keep-alive "
        "connections are closed first) until one closes."
    )
    limit_request_body: int = opt(
        100 * 1024 * 1024, "Largest request body in bytes (declared or chunked); beyond it 413 and close. "
        "0: no limit.", metavar="BYTES",
    )
    limit_max_requests: Optional[int] = opt(
        None, "Exit gracefully after serving this many requests (per process)."
    )
    limit_request_line: int = opt(8190, "Maximum request-line length in bytes; longer gets 414.")
    limit_request_fields: int = opt(100, "Maximum number of request header fields; more gets 431.")
    limit_request_field_size: int = opt(
        8190, "Maximum size of one request header line; larger gets 431.", "--limit-request-field-size",
        "--limit-request-field_size",
    )

    # -- WebSockets ------------------------------------------------------------------
    ws: str = opt(
        "auto", "WebSocket support: none answers upgrade requests as plain HTTP; the others (uvicorn's "
        "spellings) serve them with websockets' sans-I/O protocol.", choices=WS_CHOICES,
    )
    ws_max_size: int = opt(16 * 1024 * 1024, "Largest WebSocket message accepted, in bytes (1009 beyond).",
                           metavar="BYTES")
    ws_max_queue: int = opt(32, "WebSocket messages buffered for an app that does not receive them before "
                            "reading from the client pauses.")
    ws_ping_interval: float = opt(20.0, "Seconds between keepalive pings on a WebSocket (0: none).")
    ws_ping_timeout: float = opt(20.0, "Seconds to wait for a pong before closing with 1011 (0: wait forever).")
    ws_per_message_deflate: bool = opt(
        True, "Negotiate permessage-deflate compression when the client offers it (true/false).",
        metavar="BOOLEAN",
    )

    # -- HTTP/2 ----------------------------------------------------------------------
    http2: bool = opt(
        False, "Serve HTTP/2 too: ALPN h2 over TLS, prior-knowledge h2c on cleartext listeners (same port as "
        "HTTP/1.1). Needs h2: pip install 'asgiserve[http2]'.", is_flag=True, secondary="--no-http2",
    )
    http2_max_concurrent_streams: int = opt(100, "HTTP/2 streams a client may have open on one connection.")
    http2_max_header_list_size: int = opt(
        65536, "Largest HTTP/2 request header list (decoded, RFC 9113 sizes); larger gets 431 on its stream "
        "(over 4x: GOAWAY, the connection ends).",
        metavar="BYTES",
    )
    http2_header_table_size: int = opt(4096, "HPACK dynamic table size the client may use.", metavar="BYTES")
    http2_max_frame_size: int = opt(
        16384, "Largest HTTP/2 frame payload accepted (16384 to 16777215).", metavar="BYTES"
    )
    http2_initial_window_size: int = opt(
        262144, "HTTP/2 stream flow-control window: request body bytes a client may send ahead of the app "
        "reading them, per stream.", metavar="BYTES",
    )
    http2_connection_window_size: int = opt(
        1048576, "HTTP/2 connection flow-control window: request body bytes buffered per connection, all "
        "streams together.", metavar="BYTES",
    )
    http2_stall_timeout: float = opt(
        30.0, "Seconds a response may wait for an HTTP/2 client to open its flow-control window; then the "
        "connection is closed (GOAWAY). 0: no limit."
    )

    # -- logging ---------------------------------------------------------------------
    log_level: str = opt("info", "Log level.", choices=LOG_LEVELS)
    log_config: Optional[str] = opt(None, "Logging configuration file: JSON (dictConfig) or .ini.", metavar="FILE")
    access_log: bool = opt(True, "Write an access log line per response.", is_flag=True, secondary="--no-access-log")
    access_log_format: Optional[str] = opt(
        None, "Access log format using gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s'.",
        "--access-log-format", "--access-logformat", metavar="FORMAT",
    )

    # -- WSGI bridge -----------------------------------------------------------------
    threads: int = opt(32, "Threads in the WSGI bridge's pool (WSGI apps only).")
    wsgi_send_timeout: float = opt(
        60.0, "Seconds a WSGI response may stall on a client that does not read before it is dropped."
    )
    wsgi_buffer: int = opt(
        512 * 1024,
        "Bytes of a streamed WSGI response its thread may produce ahead of the client "
        "(larger: fewer thread switches, more memory per response).",
        metavar="BYTES",
    )

    # -- development -----------------------------------------------------------------
    reload: bool = opt(
        False, "Restart the workers when watched files change (implies the supervisor; not with --preload).",
        is_flag=True,
    )
    reload_dirs: tuple[str, ...] = opt(
        (), "Directory to watch, repeatable. Default: the current directory and --app-dir.", "--reload-dir",
        multiple=True, metavar="DIR",
    )
    reload_includes: tuple[str, ...] = opt(
        (), "Also watch files matching this glob, repeatable (*.py always is).", "--reload-include",
        multiple=True, metavar="GLOB",
    )
    reload_excludes: tuple[str, ...] = opt(
        (), "Ignore files and directories matching this glob, repeatable (added to the defaults).",
        "--reload-exclude", multiple=True, metavar="GLOB",
    )
    reload_delay: float = opt(
        0.1, "Seconds of quiet after a change before reloading, so a burst of saves reloads once."
    )
    env_file: Optional[str] = opt(
        None, "Load this dotenv file into the environment before the app is imported (again on each reload).",
        metavar="FILE",
    )

    # -- gunicorn compatibility --------------------------------------------------------
    # gunicorn's own flags, so its command lines and config files work unchanged (docs/deployment.md
    # lists every gunicorn setting). Mapped onto the options above in __post_init__/workerclass.py.
    worker_class: Optional[str] = opt(
        None, "gunicorn's worker class, mapped onto asgiserve: sync (WSGI, 1 thread), gthread (WSGI, --threads), "
        "asgi, uvicorn.workers.UvicornWorker, uvicorn_worker.UvicornWorker (ASGI), "
        "uvicorn.workers.UvicornH11Worker (ASGI, h11 parser). gevent/eventlet/tornado are refused.",
        "-k", "--worker-class", metavar="CLASS",
    )
    worker_connections: Optional[int] = opt(
        None, "gunicorn's per-worker connection cap: sets --limit-connections (unless that is given).", metavar="N"
    )
    proc_name: Optional[str] = opt(
        None, "Process title base: 'asgiserve: master [NAME]' in ps and top (default: APP).", "-n", "--name",
        metavar="NAME",
    )
    env: tuple[str, ...] = opt(
        (), "Set an environment variable before the app is imported, as KEY=VALUE; repeatable.", "-e", "--env",
        multiple=True, metavar="KEY=VALUE",
    )
    chdir: Optional[str] = opt(
        None, "Change to this directory before anything else (relative paths in other options count from it).",
        metavar="DIR",
    )
    access_logfile: Optional[str] = opt(
        None, "Write the access log to this file ('-': stdout, the default); reopened on SIGUSR1.", metavar="PATH|-"
    )
    error_logfile: Optional[str] = opt(
        None, "Write the error log to this file ('-': stderr, the default); reopened on SIGUSR1.",
        "--error-logfile", "--log-file", metavar="PATH|-",
    )
    capture_output: bool = opt(
        False, "Send the app's stdout and stderr (print(), stray tracebacks) to --error-logfile.", is_flag=True
    )
    worker_tmp_dir: Optional[str] = opt(
        None, "Accepted for gunicorn compatibility; no effect: worker heartbeats go over a pipe, not a file.",
        metavar="DIR",
    )
    daemon: bool = opt(
        False, "Detach and run in the background once serving (not under systemd, Docker or Kubernetes).",
        "-D", "--daemon", is_flag=True,
    )
    http_protocols: Optional[str] = opt(
        None, "gunicorn's switch for HTTP/2, comma-separated: h2,h1 or h2 serves HTTP/2 too (as --http2), h1 "
        "HTTP/1.1 only (as --no-http2). When given, it decides over --http2/--no-http2; h2 is preferred in ALPN "
        "whatever the order.", metavar="h2,h1",
    )
    http2_cleartext: Optional[str] = opt(
        None, "gunicorn's h2c mode, with HTTP/2 on: prior-knowledge (what --http2 does by default: a cleartext "
        "connection opening with the HTTP/2 preface speaks h2c), off (HTTP/2 over TLS only), both (as "
        "prior-knowledge), upgrade (as off). Upgrade: h2c itself is not supported.", metavar="MODE",
    )
    statsd_host: Optional[str] = opt(
        None, "Send gunicorn's statsd metrics, one UDP datagram per event, to HOST:PORT (or unix:PATH).",
        metavar="HOST:PORT",
    )
    statsd_prefix: str = opt("", "Prefix of the statsd metric names (a '.' is added).", metavar="PREFIX")
    dogstatsd_tags: str = opt(
        "", "Datadog tags appended to every statsd metric, e.g. 'env:prod,team:web'.", metavar="TAGS"
    )

    # -- metrics ---------------------------------------------------------------------
    metrics: Optional[str] = opt(
        None, "Serve live figures on a separate listener at HOST:PORT: Prometheus text at /metrics, a live "
        "page at /. Off by default. Needs prometheus_client: pip install 'asgiserve[metrics]'.",
        metavar="HOST:PORT",
    )

    # -- processes -------------------------------------------------------------------
    workers: int = opt(1, "Number of worker processes.", "-w", "--workers", env="WEB_CONCURRENCY")
    supervise: bool = opt(
        False, "Run the worker supervisor even with one worker (HUP reloads, --timeout, --max-requests).",
        is_flag=True,
    )
    preload: bool = opt(False, "Load the app in the supervisor before forking workers.", is_flag=True)
    timeout: float = opt(
        30.0, "Kill and replace a worker whose event loop has not checked in for this many seconds (0: never).",
        "-t", "--timeout",
    )
    max_requests: int = opt(0, "Replace a worker after about this many requests (0: never).")
    max_requests_jitter: int = opt(0, "Add up to this many requests at random to --max-requests per worker.")
    pid: Optional[str] = opt(None, "Write the supervisor's PID to this file.", "-p", "--pid", metavar="FILE")
    user: Optional[str] = opt(None, "Switch worker processes to this user (when started as root).", "-u", "--user")
    group: Optional[str] = opt(None, "Switch worker processes to this group (when started as root).", "-g", "--group")

    def __post_init__(self) -> None:
        problems = []
        problems += self._apply_gunicorn_options()
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                problems.append(f"--{f.name.replace('_', '-')} must be one of {', '.join(choices)}")
        positive = (
            "backlog", "limit_request_line", "limit_request_fields", "limit_request_field_size", "threads",
            "wsgi_buffer", "ws_max_size", "ws_max_queue",
        )
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        non_negative = (
            "timeout_keep_alive", "timeout_graceful_shutdown", "lifespan_startup_timeout",
            "lifespan_shutdown_timeout", "timeout", "max_requests", "max_requests_jitter", "wsgi_send_timeout",
            "ws_ping_interval", "ws_ping_timeout", "reload_delay", "timeout_request_body", "limit_request_body",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must not be negative")
        if self.workers < 1:
            problems.append("--workers must be at least 1")
        if self.timeout_request_header <= 0:
            problems.append("--timeout-request-header must be more than 0")
        for name in ("limit_concurrency", "limit_max_requests", "limit_connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.reload and self.preload:
            problems.append("--reload cannot be combined with --preload: the workers must import the changed code")
        if self.reload and self.app is not None and not isinstance(self.app, str):
            problems.append("--reload needs APP as an import string ('module:attribute'), not an app object")
        if self.port is not None and not 0 <= self.port <= 65535:
            problems.append("--port must be between 0 and 65535")
        for header in self.headers:
            name, sep, value = header.partition(":")
            if not sep or not name.strip():
                problems.append(f"--header {header!r} is not 'Name: value'")
            elif not _TOKEN.fullmatch(name.strip()) or _BAD_VALUE.search(value):
                # These bytes go on the wire with every response: no spaces or separators in
                # the name, no CR/LF/NUL (header injection) or non-ASCII in the value.
                problems.append(f"--header {header!r}: invalid header name or value")
        problems += self._check_http2_options()
        if self.ssl_handshake_timeout is not None and self.ssl_handshake_timeout <= 0:
            problems.append("--ssl-handshake-timeout must be more than 0")
        tls_only = ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_ciphers")
        if self.ssl_certfile is None:
            for name in tls_only:
                if getattr(self, name) is not None:
                    problems.append(f"--{name.replace('_', '-')} needs --ssl-certfile")
        elif self.ssl_cert_reqs not in ("none", "0") and self.ssl_ca_certs is None:
            problems.append("--ssl-cert-reqs optional/required needs --ssl-ca-certs to verify clients with")
        problems += self._check_gunicorn_options()
        if self.metrics is not None:
            from .metrics_http import address_problems

            problems += address_problems(self.metrics)
        if problems:
            raise ConfigError("; ".join(problems))

    def _apply_gunicorn_options(self) -> list[str]:
        """gunicorn's -k decides the interface, threads and parser (workerclass.py says how), and
        --worker-connections is --limit-connections unless that is given. The mapped values are
        stored in those fields, so everything downstream reads the effective ones; applying them
        again (replace()) changes nothing."""
        if self.worker_connections is not None and self.limit_connections is None:
            object.__setattr__(self, "limit_connections", self.worker_connections)
        if self.http_protocols is not None:
            from .gunicorn_names import http_protocols

            try:
                object.__setattr__(self, "http2", "h2" in http_protocols(self.http_protocols))
            except ConfigError as exc:
                return [f"--http-protocols: {exc}"]
        if self.http2_cleartext is not None:
            mode = str(self.http2_cleartext).strip().lower()
            if mode not in ("off", "prior-knowledge", "upgrade", "both"):
                return [f"--http2-cleartext must be one of off, prior-knowledge, upgrade, both (got {mode!r})"]
            object.__setattr__(self, "http2_cleartext", mode)
        if self.worker_class is None:
            return []
        from .workerclass import resolve

        try:
            mapped = resolve(self.worker_class, self.interface, self.threads, self.http,
                             int(Config.__dataclass_fields__["threads"].default))  # type: ignore[arg-type]
        except ConfigError as exc:
            return [str(exc)]
        for name, value in mapped._asdict().items():
            object.__setattr__(self, name, value)
        return []

    def _check_http2_options(self) -> list[str]:
        problems = []
        if self.http2_max_concurrent_streams < 1:
            problems.append("--http2-max-concurrent-streams must be at least 1")
        if not 16384 <= self.http2_max_frame_size <= 16777215:
            problems.append("--http2-max-frame-size must be from 16384 to 16777215")
        for name in ("http2_initial_window_size", "http2_connection_window_size"):
            if not 65535 <= getattr(self, name) <= 2**31 - 1:
                problems.append(f"--{name.replace('_', '-')} must be from 65535 to 2147483647")
        if self.http2_max_header_list_size < 1024:
            problems.append("--http2-max-header-list-size must be at least 1024")
        if self.http2_header_table_size < 0:
            problems.append("--http2-header-table-size must not be negative")
        if self.http2_stall_timeout < 0:
            problems.append("--http2-stall-timeout must not be negative")
        if self.http2:
            try:
                import h2  # noqa: F401
            except ImportError:
                problems.append("--http2 needs the h2 package: pip install 'asgiserve[http2]'")
        return problems

    def _check_gunicorn_options(self) -> list[str]:
        problems = []
        for item in self.env:
            key, sep, _ = item.partition("=")
            if not sep or not key.strip():
                problems.append(f"-e/--env {item!r} is not KEY=VALUE")
        if self.worker_connections is not None and self.worker_connections < 1:
            problems.append("--worker-connections must be at least 1")
        if self.statsd_host is not None:
            from .statsd import parse_address

            try:
                parse_address(self.statsd_host)
            except ConfigError as exc:
                problems.append(str(exc))
        return problems

    @property
    def env_vars(self) -> dict[str, str]:
        """-e/--env as a dict (later entries win, as in gunicorn)."""
        pairs = (item.partition("=") for item in self.env)
        return {key.strip(): value for key, _, value in pairs}

    # -- derived values (computed once; cheap to call) ----------------------------------
    @property
    def supervised(self) -> bool:
        """Whether a supervisor process runs the workers (gunicorn's model) or this process serves.

        --user/--group need it even with one worker: the supervisor binds (and chowns unix
        sockets) as root, the worker drops privileges before it loads the app. --reload is a
        supervisor mode: the sockets stay bound while workers come and go.
        """
        return (
            self.workers > 1 or self.supervise or self.max_requests > 0 or self.reload
            or self.user is not None or self.group is not None
        )

    @property
    def bind_specs(self) -> tuple[str, ...]:
        """All listen addresses as gunicorn-style specs, defaulting to 127.0.0.1:8000."""
        specs = list(self.bind)
        if self.uds:
            specs.append(f"unix:{self.uds}")
        if self.fd is not None:
            specs.append(f"fd://{self.fd}")
        if self.host is not None or self.port is not None or not specs:
            host = self.host if self.host is not None else "127.0.0.1"
            port = self.port if self.port is not None else 8000
            specs.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return tuple(specs)

    @property
    def default_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """--header values as lower-cased (name, value) byte pairs."""
        pairs = []
        for header in self.headers:
            name, _, value = header.partition(":")
            pairs.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
        return tuple(pairs)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def option_fields() -> list[dataclasses.Field]:  # type: ignore[type-arg]
    """The fields exposed as CLI flags / env vars, in declaration order."""
    return [f for f in dataclasses.fields(Config) if f.metadata.get("cli", True)]


def env_names(f: dataclasses.Field) -> list[str]:  # type: ignore[type-arg]
    names = [f"ASGISERVE_{f.name.upper()}"]
    if f.metadata.get("env"):
        names.append(f.metadata["env"])
    return names


def env_value(f: dataclasses.Field) -> Optional[str]:  # type: ignore[type-arg]
    for name in env_names(f):
        if name in os.environ:
            return os.environ[name]
    return None
