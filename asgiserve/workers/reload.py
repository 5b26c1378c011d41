"""--reload: the supervisor's development mode. A file watcher (watch.py) feeds the supervisor's
own event queue, and a change takes the path of SIGHUP: the sockets stay bound, a new
generation of workers imports the new code, and the old one is told to drain once the new one
serves. Old workers get --timeout-graceful-shutdown for what they have in flight (open
WebSockets are closed with 1012 at once), then it is cancelled; the supervisor's kill deadline
backs that up. So an open stream delays nothing: the new code serves as soon as it has booted.

What differs from a plain supervisor:
- A worker that cannot boot (syntax error, ImportError, failed lifespan startup) stops
  nothing. If an older generation still serves, it keeps serving (as after a bad HUP);
  otherwise the supervisor waits for the next change instead of exiting. The user's
  traceback is shown once per change, not once per worker.
- Every change resets the crash backoff, so the save that fixes a crash loop is tried at once.
- Before a reload the changed modules' cached bytecode is removed: a .pyc records its
  source's mtime in whole seconds and its size, so a same-size edit within the second of the
  previous import would otherwise load the stale .pyc.
- Each reload logs the names of the changed files.
The watcher's thread never calls into this class except ``_wake`` (append, write a byte).
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import signal
import time
from typing import Optional

from .. import systemd
from ..config import Config
from .process import Worker
from .supervisor import QUICK_STOP_GRACE, Supervisor
from .watch import News, Watcher, WatchRules

logger = logging.getLogger("asgiserve.error")

RELOAD_EVENT = 0  # queued with the signal numbers (0 is none): "the watcher has news"
SHOWN_NAMES = 5


def describe(paths: tuple[str, ...]) -> str:
    """'app.py, pkg/models.py and 3 more': relative to the working directory where possible."""
    cwd = os.getcwd()
    names = [os.path.relpath(p, cwd) if p.startswith(cwd + os.sep) else p for p in paths]
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown if len(names) <= SHOWN_NAMES else f"{shown} and {len(names) - SHOWN_NAMES} more"


def purge_bytecode(paths: tuple[str, ...]) -> None:
    for path in paths:
        if not path.endswith(".py"):
            continue
        try:
            os.unlink(importlib.util.cache_from_source(path))
        except (OSError, ValueError, NotImplementedError):  # none cached, or no cache for this interpreter
            pass


class ReloadSupervisor(Supervisor):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.watcher = Watcher(WatchRules.from_config(config), config.reload_delay, self._wake)
        self.waiting: Optional[int] = None  # the generation that failed with nothing serving

    def _wake(self) -> None:
        """Called from the watcher's thread: queue and wake the main loop, nothing else."""
        if len(self.signals) < 64:
            self.signals.append(RELOAD_EVENT)
        try:
            os.write(self.wakeup[1], b"\0")
        except OSError:  # pipe full: the loop is awake anyway
            pass

    def _install_signals(self) -> None:
        super()._install_signals()
        note = self.watcher.start()
        if note:
            logger.info(note)

    def _restore_signals(self) -> None:
        self.watcher.stop()  # before the wakeup pipe closes: nothing writes to it afterwards
        super()._restore_signals()

    def dispatch(self, signum: int) -> None:
        if signum != RELOAD_EVENT:
            super().dispatch(signum)
            return
        for news in self.watcher.drain():
            self.on_news(news)

    def on_news(self, news: News) -> None:
        if news.kind == "changed":
            if not self.stopping:
                purge_bytecode(news.paths)
                self.handle_hup(f"{describe(news.paths)} changed")
        elif news.kind == "ready":
            logger.info(news.text)
        else:
            logger.warning(news.text)

    def handle_hup(self, reason: str = "SIGHUP") -> None:
        if not self.stopping:  # new code: try it now, whatever failed before
            self.waiting = None
            self.crashes.clear()
            self.next_spawn_at = 0.0
        super().handle_hup(reason)

    def on_boot_failure(self, w: Worker, text: str) -> None:
        serving = any(x.ready and not x.stopping and x.generation != w.generation for x in self.workers.values())
        if serving or w.generation in self.booted_generations:
            super().on_boot_failure(w, text)  # the previous code keeps serving / a transient failure
            return
        reason = self.show_boot_error(w, text)
        if self.waiting != w.generation:
            self.waiting = w.generation
            logger.error("Worker %d failed to boot: %s. Waiting for a change to the files to try again.",
                         w.pid, reason)
            systemd.status(f"Waiting for a fix: {reason}")
        self.reloading = False
        self.next_spawn_at = math.inf  # no respawns of code that cannot start; handle_hup resets it
        now = time.monotonic()
        for x in list(self.workers.values()):
            if x.generation == w.generation and not x.stopping:
                self.stop_worker(x, signal.SIGTERM, now + QUICK_STOP_GRACE)
