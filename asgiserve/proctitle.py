"""Process titles, as gunicorn sets them: ``asgiserve: master [NAME]``, ``asgiserve: worker [NAME]``.

NAME is ``-n/--name`` (gunicorn's proc_name), else APP. The whole command line shown by ``ps``
and ``top`` (/proc/PID/cmdline) needs ``setproctitle`` (``pip install asgiserve[proctitle]``).
Without it, on Linux, the kernel's 15-byte thread name (/proc/PID/comm, what ``top`` and
``ps -o comm`` show) is set to NAME, so processes can still be told apart.
"""
from __future__ import annotations

import sys
from typing import Any


def title_name(config: Any) -> str:
    if config.proc_name:
        return str(config.proc_name)
    app = config.app
    return app if isinstance(app, str) else getattr(app, "__qualname__", "app")


def set_title(role: str, config: Any) -> None:
    name = title_name(config)
    try:
        import setproctitle  # type: ignore[import-not-found,unused-ignore]  # optional extra
    except ImportError:
        if config.proc_name:
            _set_comm(name)
        return
    setproctitle.setproctitle(f"asgiserve: {role} [{name}]")


def _set_comm(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_NAME = 15
        libc.prctl(PR_SET_NAME, name.encode("utf-8", "replace")[:15], 0, 0, 0)
    except (OSError, AttributeError):  # no libc symbol: the title stays as it is
        pass
