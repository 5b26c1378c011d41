"""gunicorn's setting names: what each one sets in asgiserve, or why it cannot apply.

A table of names, not of options: every entry names a Config field (declared once, in
config.py) or gives the reason gunicorn's setting has no counterpart. config_file.py reads a
config file through it; hooks.py answers ``server.cfg.<gunicorn name>`` through it; the README's
"gunicorn.conf.py" section lists the same entries (a test keeps them in step).
"""
from __future__ import annotations

from typing import Any

from .errors import ConfigError

# gunicorn setting -> the Config field it sets. Same-named settings are listed too, so that a
# gunicorn name whose field is missing in this version is told apart from a typo. "app" is
# the APP argument.
GUNICORN: dict[str, str] = {
    "wsgi_app": "app", "bind": "bind", "backlog": "backlog", "workers": "workers", "threads": "threads",
    "max_requests": "max_requests", "max_requests_jitter": "max_requests_jitter", "timeout": "timeout",
    "graceful_timeout": "timeout_graceful_shutdown", "keepalive": "timeout_keep_alive",
    "limit_request_line": "limit_request_line", "limit_request_fields": "limit_request_fields",
    "limit_request_field_size": "limit_request_field_size", "preload_app": "preload", "reuse_port": "reuse_port",
    "pidfile": "pid", "user": "user", "group": "group", "umask": "umask", "pythonpath": "app_dir",
    "forwarded_allow_ips": "forwarded_allow_ips", "access_log_format": "access_log_format",
    "loglevel": "log_level", "logconfig": "log_config", "logconfig_json": "log_config",
    "certfile": "ssl_certfile", "keyfile": "ssl_keyfile", "ca_certs": "ssl_ca_certs",
    "cert_reqs": "ssl_cert_reqs", "ciphers": "ssl_ciphers", "root_path": "root_path",
    "asgi_loop": "loop", "asgi_lifespan": "lifespan",
    "reload": "reload", "reload_extra_files": "reload_includes",
    # Fields that come with gunicorn's command-line flags (-k, --access-logfile, -n, -e, ...):
    "worker_class": "worker_class", "worker_connections": "worker_connections",
    "accesslog": "access_logfile", "errorlog": "error_logfile", "proc_name": "proc_name", "raw_env": "env",
    "chdir": "chdir", "daemon": "daemon", "capture_output": "capture_output",
    "worker_tmp_dir": "worker_tmp_dir", "statsd_host": "statsd_host", "statsd_prefix": "statsd_prefix",
    "dogstatsd_tags": "dogstatsd_tags",
    # HTTP/2 (gunicorn 25+): http_protocols ("h2,h1") turns --http2 on or off.
    "http_protocols": "http2", "http2_cleartext": "http2_cleartext",
    "http2_max_concurrent_streams": "http2_max_concurrent_streams", "http2_initial_window_size": "http2_initial_window_size",
    "http2_max_frame_size": "http2_max_frame_size", "http2_max_header_list_size": "http2_max_header_list_size",
}

_SYSLOG = "no syslog handler is built in: use logconfig_dict with logging.handlers.SysLogHandler, or stderr to journald"
_STRICT = "parsing is strict (RFC 9112) and the same on both parsers; there is nothing to relax"
_DIRTY = "gunicorn's dirty arbiters have no counterpart"
# gunicorn setting -> why it cannot apply. Warned when set to anything but off or gunicorn's default.
NOT_APPLICABLE: dict[str, str] = {
    "sendfile": "files from wsgi.file_wrapper are always sent with sendfile() where the transport allows it",
    "initgroups": "switching --user always sets the user's supplementary groups",
    "tmp_upload_dir": "request bodies are streamed to the app, never spooled to disk",
    "secure_scheme_headers": "the scheme comes from X-Forwarded-Proto or Forwarded proto= sent by forwarded_allow_ips",
    "forwarder_headers": "only X-Forwarded-For/-Proto and Forwarded are read from proxies (root_path sets SCRIPT_NAME)",
    "header_map": "headers with '_' in their name are dropped from WSGI environs (gunicorn's default, drop)",
    "spew": "no line tracing; use a debugger or py-spy",
    "logger_class": "logging goes through the logging module: use logconfig_dict or --log-config",
    "disable_redirect_access_to_syslog": _SYSLOG, "syslog": _SYSLOG, "syslog_addr": _SYSLOG,
    "syslog_prefix": _SYSLOG, "syslog_facility": _SYSLOG,
    "enable_stdio_inheritance": "with daemon, stdio goes to /dev/null once serving: log to accesslog/errorlog files",
    "enable_backlog_metric": "no backlog metric",
    "default_proc_name": "set by gunicorn itself; proc_name sets the title",
    "paste": "PasteDeploy is not supported: point APP at the WSGI callable",
    "raw_paste_global_conf": "PasteDeploy is not supported: point APP at the WSGI callable",
    "reload_engine": "--reload picks its watcher itself (watchfiles when installed, else polling)",
    "proxy_protocol": "the PROXY protocol is not supported: use X-Forwarded-For/Forwarded with forwarded_allow_ips",
    "proxy_allow_ips": "the PROXY protocol is not supported, so there is no PROXY peer to allow",
    "protocol": "only HTTP/1.1 is served (no uwsgi protocol)", "uwsgi_allow_ips": "no uwsgi protocol",
    "ssl_version": "deprecated in gunicorn; use ssl_min_version (1.2 or 1.3)",
    "suppress_ragged_eofs": "asyncio's TLS transport handles this",
    "do_handshake_on_connect": "asyncio's TLS transport handles this",
    "permit_obsolete_folding": _STRICT, "strip_header_spaces": _STRICT, "permit_unconventional_http_method": _STRICT,
    "permit_unconventional_http_version": _STRICT, "casefold_http_method": _STRICT,
    "asgi_disconnect_grace_period": "apps get http.disconnect at once; shutdown has --timeout-graceful-shutdown",
    "http_parser": "asgiserve's parsers are chosen with http (httptools or h11)",
    "dirty_apps": _DIRTY, "dirty_workers": _DIRTY, "dirty_timeout": _DIRTY, "dirty_threads": _DIRTY,
    "dirty_graceful_timeout": _DIRTY, "on_dirty_starting": _DIRTY, "dirty_post_fork": _DIRTY,
    "dirty_worker_init": _DIRTY, "dirty_worker_exit": _DIRTY,
    "control_socket": "no control socket: use signals (HUP, TTIN, TTOU, USR1)",
    "control_socket_mode": "no control socket", "control_socket_disable": "no control socket",
    "ssl_context": "a hook returning an SSLContext is not supported: use the certfile/keyfile/ca_certs settings",
    "pre_exec": "never called: asgiserve does not re-execute itself on USR2 (HUP starts workers with fresh code)",
    "config": "a config file cannot name another one",
    "check_config": "use --check-config on the command line", "print_config": "use --print-config on the command line",
}
# Values of not-applicable settings that ask for nothing asgiserve lacks (gunicorn's defaults).
_HARMLESS = {
    "suppress_ragged_eofs": True, "proxy_allow_ips": "127.0.0.1,::1", "header_map": "drop",
    "secure_scheme_headers": {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
    "default_proc_name": "gunicorn", "control_socket": "gunicorn.ctl",
}
# In a gunicorn file, these often hold helper values while bind says where to listen.
BIND_HELPERS = ("host", "port", "uds", "fd")
# gunicorn's 0 means "no limit" for these; it caps the first two itself, the others get 1 MiB.
_UNLIMITED = {"limit_request_line": 8190, "limit_request_fields": 32768, "limit_request_field_size": 1 << 20,
              "http2_max_header_list_size": 1 << 20}


def http_protocols(value: Any) -> list[str]:
    """gunicorn's http_protocols: comma-separated h1/h2, in order of preference, no repeats
    (None or empty: h1)."""
    if value is None:
        return ["h1"]
    if not isinstance(value, str):
        raise ConfigError(f"http_protocols must be a string like 'h2,h1', not {value!r}")
    protocols = [p.strip().lower() for p in value.split(",") if p.strip()] or ["h1"]
    for p in protocols:
        if p not in ("h1", "h2"):
            raise ConfigError(f"invalid protocol {p!r} in http_protocols (valid: h1, h2)")
    if len(set(protocols)) != len(protocols):
        raise ConfigError(f"http_protocols {value!r} lists a protocol twice")
    return protocols


def convert(name: str, value: Any) -> Any:
    """gunicorn's spellings of a value, turned into what the matching option takes."""
    if name in _UNLIMITED and value in (0, "0"):
        return _UNLIMITED[name]
    if name == "cert_reqs" and isinstance(value, int):
        return str(int(value))  # ssl.CERT_REQUIRED is an IntEnum: 2
    if name in ("forwarded_allow_ips",) and isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if name == "http_protocols":
        return "h2" in http_protocols(value)  # onto --http2 / --no-http2
    if name == "http2_cleartext" and isinstance(value, bool):
        return "prior-knowledge" if value else "off"  # as gunicorn reads a bool there
    if name == "pythonpath" and isinstance(value, str) and "," in value:
        raise ConfigError("pythonpath: asgiserve takes one directory (app_dir), not a comma-separated list")
    return value


def harmless(name: str, value: Any) -> bool:
    """A not-applicable (or missing) setting left off or at gunicorn's default asks for nothing."""
    return not value or _HARMLESS.get(name, object()) == value
