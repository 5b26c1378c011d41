"""Process setup that gunicorn's flags ask for, in the order gunicorn applies them.

1. ``prepare``: ``--chdir`` (first, so relative paths in every other option count from there,
   and the app is imported from there) and ``-e/--env KEY=VALUE`` (set in ``os.environ`` before
   anything imports the app; workers inherit it; it overrides the inherited environment, as
   gunicorn's ``raw_env`` does).
2. ``daemon.daemonize`` for ``-D`` (after the checks, so a bad option still fails in the
   foreground with exit 2).
3. ``begin``, once logging is configured: one line per gunicorn option that was mapped or that
   has no effect here (never silently), the process title (-n), statsd's log counters.

The CLI and ``asgiserve.run()`` both call these; ``Server.serve()`` (embedding) does not.
"""
from __future__ import annotations

import logging
import os

from .config import Config
from .errors import ConfigError

logger = logging.getLogger("asgiserve.error")


def prepare(config: Config) -> None:
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(f"--chdir {config.chdir}: {exc.strerror or exc}") from None
    for key, value in config.env_vars.items():
        os.environ[key] = value


def notes(config: Config) -> list[str]:
    """What gunicorn's options became here, one line each (empty when none was given)."""
    lines = []
    if config.worker_class is not None:
        from .workerclass import describe

        lines.append(describe(config.worker_class, config.threads, config.http))
    if config.worker_connections is not None:
        if config.limit_connections == config.worker_connections:
            lines.append(
                f"--worker-connections {config.worker_connections}: each worker holds at most "
                f"{config.worker_connections} connections and stops accepting until one closes (--limit-connections)."
            )
        else:
            lines.append(f"--worker-connections {config.worker_connections} has no effect: --limit-connections "
                         f"{config.limit_connections} is set.")
    if config.http_protocols is not None:
        lines.append(f"--http-protocols {config.http_protocols}: " + (
            "HTTP/2 on (--http2), preferred in ALPN." if config.http2 else "HTTP/1.1 only (--no-http2)."))
    if config.http2 and config.http2_cleartext in ("upgrade", "both"):
        lines.append(f"--http2-cleartext {config.http2_cleartext}: Upgrade: h2c is not supported (RFC 9113 deprecates "
                     "it); such requests are answered over HTTP/1.1" + (
                         "; prior-knowledge h2c is served." if config.http2_cleartext == "both" else
                         "; h2c is off, HTTP/2 only over TLS."))
    if config.worker_tmp_dir is not None:
        lines.append("--worker-tmp-dir has no effect: worker heartbeats go over a pipe, nothing is written to disk.")
    if config.capture_output and config.error_logfile in (None, "-"):
        lines.append("--capture-output has no effect without --error-logfile FILE: the app's output already goes "
                     "to stdout/stderr.")
    return lines


def begin(config: Config) -> None:
    """After logging is configured, before serving."""
    for line in notes(config):
        logger.info("%s", line)
    if config.statsd_host:
        from . import statsd

        statsd.count_log_records(config)
        if not config.supervised:  # the supervisor reports its own count as it changes
            client = statsd.from_config(config)
            if client is not None:
                client.workers(1)
                client.close()
    if not config.supervised and config.proc_name:  # the supervisor titles itself and its workers
        from .proctitle import set_title

        set_title("server", config)  # only when asked: asgiserve.run() may be embedded in a program
