"""The supervisor (gunicorn calls it the arbiter): binds once, forks workers, keeps them alive.

Why fork, not spawn: the workers must share the listening sockets the supervisor bound
(inherited fds need no passing), ``--preload`` must hand them an app already imported in the
supervisor (copy-on-write), and a crashed worker must be replaced in milliseconds, not after a
fresh interpreter re-imports everything. Fork is safe here because the supervisor never runs an
event loop or threads: it is a plain ``poll()`` loop. Without ``--preload`` the supervisor never
imports the user's code, so every forked worker, including those a HUP starts, imports it fresh.

Signals (as gunicorn users know them), each only *queued* by its handler; the main loop then
calls the matching ``handle_*`` method:
  TERM, INT  graceful stop: workers stop accepting, finish in-flight requests (bounded by
             --timeout-graceful-shutdown); a second INT forces it.   QUIT  immediate stop.
  HUP        reload: a new generation of workers starts; the old one is told to drain only
             once the new one serves. If the new code cannot boot, the old workers keep serving.
  TTIN/TTOU  one worker more / less.   USR1  reopen log files (here and in the workers).
Workers report over a pipe (see worker.py): heartbeats from their event loop (--timeout),
readiness, --max-requests reached, boot errors. A worker that exits before ever serving with
exit code 3 stops the supervisor (exit 3, the worker's reason) instead of looping on a broken
app; other crashes are respawned, with a growing delay when they repeat.
--reload (reload.py) adds a file watcher whose changes take HUP's path, and waits for the next
change instead of stopping when the app cannot boot.
"""
from __future__ import annotations

import json
import logging
import os
import random
import select
import signal
import socket
import sys
import time
from collections import Counter, deque
from typing import Any, Callable, Optional

from .. import bind, hooks, systemd
from ..config import Config
from ..errors import EXIT_STARTUP, AsgiserveError
from . import worker as child
from .process import PidFile, Worker, describe_exit, fork_worker, read_available, resolve_ids

logger = logging.getLogger("asgiserve.error")

ABORT_GRACE = 1.0  # after SIGABRT (the worker dumps its stacks) until SIGKILL
QUICK_STOP_GRACE = 2.0  # QUIT and halts: how long workers get before SIGKILL
STOP_MARGIN = 5.0  # on top of the graceful and lifespan-shutdown timeouts
CRASH_WINDOW = 60.0
MAX_BACKOFF = 30.0


class WorkerBootError(AsgiserveError):
    """Workers could not start the app: the supervisor stopped (exit code 3)."""


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.target = config.workers
        self.workers: dict[int, Worker] = {}
        self.by_fd: dict[int, Worker] = {}
        self.generation = 0
        self.newest_generation = 0  # generations are never reused, even after a failed reload
        self.booted_generations: set[int] = set()
        self.spawned = 0
        self.signals: deque[int] = deque()
        self.poller = select.poll()
        self.wakeup: tuple[int, int] = (-1, -1)
        self.sockets: list[socket.socket] = []
        self.loaded: Any = None
        self.stopping: Optional[str] = None  # "graceful" | "immediate" | "halt"
        self.halt_reason: Optional[str] = None
        self.interrupts = 0
        self.crashes: deque[float] = deque()
        self.next_spawn_at = 0.0
        self.announced = False
        self.reloading = False
        self.status = ""
        self.shown_tracebacks: set[int] = set()
        self.uid, self.gid = resolve_ids(config)
        self.watchdog = systemd.watchdog_interval()
        self.next_watchdog = 0.0
        self.restarts: Counter[str] = Counter()  # workers replaced, by cause (shown by --metrics)
        self.live: Any = None  # --metrics: metrics_http.SupervisorFigures, one more fd in the poll loop
        from ..statsd import from_config

        self.metrics = from_config(config)  # --statsd-host: gunicorn.workers as the count changes

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> None:
        config = self.config
        hooks.on_starting(self)  # config-file server hooks (hooks.py); nothing when none is set
        pid_file = PidFile(config.pid) if config.pid else None
        if pid_file:
            pid_file.check()
        if config.preload:
            from ..app_loader import load_app

            self.loaded = load_app(config)
            logger.info("Serving %s (preloaded)", self.loaded.description)
        from .. import tls

        tls.load(config)  # a bad certificate, key or password: one line and exit 3, before binding
        fds = systemd.listen_fds()
        if fds:
            self.sockets = bind.sockets_from_fds(fds, backlog=config.backlog)
            logger.info("Using %d socket(s) passed by systemd (LISTEN_FDS); --bind is ignored.", len(fds))
        else:
            self.sockets = bind.create_sockets(config)
        try:
            self._chown_unix_sockets()
            for sock in self.sockets:
                logger.info("Listening on %s", bind.describe(sock, self.config.ssl_certfile is not None))
            if config.metrics:  # workers send their figures; this listener combines them
                from ..metrics_http import SupervisorFigures

                self.live = SupervisorFigures(config.metrics, self.poller, self)
            if pid_file:
                pid_file.write()
            child.set_title("master", config)
            hooks.when_ready(self)
            logger.info("Supervisor %d starting %d worker(s) (fork).", os.getpid(), self.target)
            self._install_signals()
            try:
                self._main_loop()
            finally:
                self._restore_signals()
        finally:
            for w in list(self.workers.values()):
                self._close_channel(w)
            if self.live is not None:
                self.live.close()
            bind.cleanup(self.sockets)
            if pid_file:
                pid_file.remove()
        hooks.on_exit(self)
        if self.halt_reason is not None:
            raise WorkerBootError(self.halt_reason)
        logger.info("Supervisor %d stopped.", os.getpid())

    def _chown_unix_sockets(self) -> None:
        if os.geteuid() != 0 or (self.uid is None and self.gid is None):
            return
        for sock in self.sockets:
            name = sock.getsockname() if sock.family == socket.AF_UNIX else None
            if isinstance(name, str) and name and not name.startswith("\0"):
                os.chown(name, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def _install_signals(self) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.wakeup = (r, w)
        self.poller.register(r, select.POLLIN)
        # The C-level handler writes the signal number here, so poll() wakes up at once.
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in child.SUPERVISOR_SIGNALS:
            signal.signal(sig, self._enqueue)

    def _enqueue(self, signum: int, frame: Any) -> None:
        # Runs between bytecodes of the main loop: queue only, no logging, no logic.
        if len(self.signals) < 64:
            self.signals.append(signum)

    def _restore_signals(self) -> None:
        for sig in child.SUPERVISOR_SIGNALS:
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        for fd in self.wakeup:
            os.close(fd)

    def _main_loop(self) -> None:
        while True:
            self.manage_workers()
            if self.stopping and not self.workers:
                return
            timeout = self._next_wakeup()
            for fd, events in self.poller.poll(timeout * 1000):
                if fd == self.wakeup[0]:
                    try:
                        while os.read(fd, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif self.live is not None and self.live.owns(fd):
                    self.live.handle(fd, events)
                else:
                    self._read_channel(fd)
            while self.signals:
                self.dispatch(self.signals.popleft())
            self.reap_workers()
            self.murder_workers()
            self._report()
            if self.live is not None:
                self.live.sweep()

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        deadlines = [now + 1.0]
        if self.watchdog:
            deadlines.append(self.next_watchdog)
        if self.next_spawn_at > now:
            deadlines.append(self.next_spawn_at)
        timeout = self.config.timeout
        for w in self.workers.values():
            if w.kill_at is not None and not w.killed:
                deadlines.append(w.kill_at)
            elif timeout > 0 and not w.aborted:
                deadlines.append(w.last_seen + timeout)
        return max(0.0, min(deadlines) - now) + 0.001

    # -- signals --------------------------------------------------------------------------
    def dispatch(self, signum: int) -> None:
        handlers: dict[int, Callable[[], None]] = {
            signal.SIGHUP: self.handle_hup, signal.SIGTERM: self.handle_term, signal.SIGINT: self.handle_int,
            signal.SIGQUIT: self.handle_quit, signal.SIGTTIN: self.handle_ttin, signal.SIGTTOU: self.handle_ttou,
            signal.SIGUSR1: self.handle_usr1, signal.SIGCHLD: self.reap_workers,
        }
        handler = handlers.get(signum)
        if handler is not None:
            handler()

    def handle_term(self) -> None:
        self.stop("graceful", "SIGTERM")

    def handle_int(self) -> None:
        self.interrupts += 1
        self.stop("graceful" if self.interrupts == 1 else "immediate", "SIGINT")

    def handle_quit(self) -> None:
        self.stop("immediate", "SIGQUIT")

    def handle_hup(self, reason: str = "SIGHUP") -> None:
        if self.stopping:
            return
        if self.loaded is not None or not isinstance(self.config.app, str):
            logger.warning("SIGHUP: new workers reuse the app object the supervisor holds (--preload, or an app "
                           "passed as an object); restart the service to load new code.")
        self.newest_generation += 1
        self.generation = self.newest_generation
        self.reloading = True
        hooks.on_reload(self)
        systemd.reloading(f"Reloading: starting {self.target} new worker(s)")
        logger.info("Reloading (%s): starting %d new worker(s); the current ones drain once they serve.",
                    reason, self.target)

    def handle_ttin(self) -> None:
        if not self.stopping:
            self.target += 1
            logger.info("SIGTTIN: increasing workers to %d.", self.target)
            hooks.nworkers_changed(self, self.target - 1)

    def handle_ttou(self) -> None:
        if self.stopping:
            return
        if self.target <= 1:
            logger.info("SIGTTOU ignored: already at 1 worker.")
            return
        self.target -= 1
        logger.info("SIGTTOU: decreasing workers to %d.", self.target)
        hooks.nworkers_changed(self, self.target + 1)

    def handle_usr1(self) -> None:
        child.reopen_log_files()
        for w in self.workers.values():
            self._kill(w, signal.SIGUSR1)

    def stop(self, mode: str, reason: str) -> None:
        if self.stopping in ("immediate", "halt") or self.stopping == mode:
            return
        self.stopping = mode
        now = time.monotonic()
        if mode == "graceful":
            sig = signal.SIGTERM
            grace = self.config.timeout_graceful_shutdown + self.config.lifespan_shutdown_timeout + STOP_MARGIN
            logger.info("Shutting down gracefully (%s): %d worker(s) finish their requests.", reason,
                        len(self.workers))
        else:
            sig, grace = (signal.SIGTERM if mode == "halt" else signal.SIGQUIT), QUICK_STOP_GRACE
            if mode == "immediate":
                logger.info("Shutting down immediately (%s).", reason)
        systemd.stopping(f"Stopping ({reason})")
        # Close our copies of the listening sockets now, as gunicorn's arbiter does: the kernel
        # then refuses new connections once the workers have closed theirs too (a load balancer
        # retries a refused connect elsewhere, nothing sent). Kept open for the drain, they would
        # keep accepting into a backlog nobody serves, reset when the supervisor exits.
        bind.cleanup(self.sockets)
        for w in list(self.workers.values()):
            self.stop_worker(w, sig, now + grace)

    # -- workers --------------------------------------------------------------------------
    def manage_workers(self) -> None:
        """Spawn up to the target, retire extras and outgoing workers once replacements serve."""
        if self.stopping:
            return
        now = time.monotonic()
        live = [w for w in self.workers.values() if not w.stopping]
        current = [w for w in live if w.generation == self.generation and not w.retiring]
        excess = len(current) - self.target
        if excess > 0:  # TTOU: the booting ones first (they serve nobody yet), then the oldest
            for w in sorted(current, key=lambda w: (w.ready, w.age))[:excess]:
                self.stop_worker(w, signal.SIGTERM, self._graceful_deadline(now))
            current = [w for w in current if not w.stopping]
        if len(current) < self.target and now >= self.next_spawn_at:
            for _ in range(self.target - len(current)):
                self.spawn_worker()
        if sum(1 for w in current if w.ready) < self.target:
            return
        for w in live:
            if w.generation != self.generation or w.retiring:
                self.restarts["max_requests" if w.retiring else "reload"] += 1
                self.stop_worker(w, signal.SIGTERM, self._graceful_deadline(now))
        if not self.announced or self.reloading:
            what = "Reload complete" if self.announced else "Ready"
            self.announced, self.reloading = True, False
            logger.info("%s: %d worker(s) serving (pids %s).", what, len(current),
                        ", ".join(str(w.pid) for w in sorted(current, key=lambda w: w.age)))
            self.status = self._status_text()
            systemd.ready(self.status)

    def _graceful_deadline(self, now: float) -> float:
        return now + self.config.timeout_graceful_shutdown + self.config.lifespan_shutdown_timeout + STOP_MARGIN

    def spawn_worker(self) -> None:
        config = self.config
        self.spawned += 1
        jitter = random.randint(0, config.max_requests_jitter) if config.max_requests_jitter else 0
        max_requests = config.max_requests + jitter if config.max_requests else 0

        view = hooks.pre_fork(self, self.spawned)

        def in_child(channel: int) -> int:
            with hooks.worker_process(self, view):  # post_fork first, worker_exit last
                return child.run(config, self.sockets, self.loaded, channel, max_requests, self.uid, self.gid)

        try:
            live_fds = self.live.fds() if self.live is not None else ()
            pid, r = fork_worker(in_child, close_in_child=(*self.wakeup, *self.by_fd, *live_fds))
        except OSError as exc:
            logger.error("Could not fork a worker: %s", exc)
            self._record_crash()
            return
        hooks.forked(view, pid)
        worker = Worker(pid, r, self.generation, self.spawned, max_requests)
        self.workers[pid] = worker
        self.by_fd[r] = worker
        self.poller.register(r, select.POLLIN)
        logger.info("Started worker %d (generation %d).", pid, self.generation)

    def stop_worker(self, w: Worker, sig: int, kill_at: float) -> None:
        w.stopping = True
        w.kill_at = kill_at if w.kill_at is None else min(w.kill_at, kill_at)
        self._kill(w, sig)

    def _kill(self, w: Worker, sig: int) -> None:
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:  # already exited; reaping will tell
            pass

    def _read_channel(self, fd: int) -> None:
        w = self.by_fd.get(fd)
        if w is None:
            return
        data, eof = read_available(fd)
        if eof:
            self.poller.unregister(fd)
        if data:
            w.last_seen = time.monotonic()
            for line in w.feed(data):
                self.on_message(w, line)

    def on_message(self, w: Worker, line: bytes) -> None:
        kind = line[:1]
        if kind == b"R":
            w.ready = True
            self.booted_generations.add(w.generation)
            logger.info("Worker %d is serving.", w.pid)
        elif kind == b"M" and not w.retiring:
            w.retiring = True
            logger.info("Worker %d reached --max-requests (%d); starting its replacement first.",
                        w.pid, w.max_requests)
        elif kind == b"S":
            if self.live is not None:
                self.live.gatherer.update(w.pid, line[1:])
        elif kind == b"E":
            try:
                w.error = json.loads(line[1:].decode("utf-8", "replace"))
            except ValueError:
                w.error = {"message": line[1:].decode("utf-8", "replace")}

    def _close_channel(self, w: Worker) -> None:
        self.by_fd.pop(w.fd, None)
        # Messages written just before the exit (a boot error) must not be lost.
        for line in w.feed(read_available(w.fd)[0], final=True):
            self.on_message(w, line)
        try:
            self.poller.unregister(w.fd)
        except KeyError:  # already unregistered at EOF
            pass
        os.close(w.fd)

    def reap_workers(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is not None:
                self._close_channel(w)
                if self.live is not None:
                    self.live.gatherer.retire(pid)  # its counters stay in the totals
                self.on_worker_exit(w, status)
                hooks.child_exit(self, pid)

    def on_worker_exit(self, w: Worker, status: int) -> None:
        text, clean = describe_exit(status, w.killed)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if self.stopping or (w.stopping and not w.aborted):  # we asked it to stop
            level = logging.INFO if clean or w.killed else logging.WARNING
            logger.log(level, "Worker %d %s.", w.pid, text)
            return
        if w.generation != self.generation:  # outgoing after a reload: not replaced
            logger.log(logging.INFO if clean else logging.ERROR, "Worker %d (previous generation) %s.", w.pid, text)
            return
        if w.error is not None or (code == EXIT_STARTUP and not w.ready):
            self.on_boot_failure(w, text)
            return
        if clean:
            self.restarts["exit"] += 1
            logger.info("Worker %d %s; replacing it.", w.pid, text)
            return
        self.restarts["timeout" if w.aborted else "crash"] += 1
        logger.error("Worker %d %s; replacing it.", w.pid, text)
        self._record_crash()

    def show_boot_error(self, w: Worker, text: str) -> str:
        """Write the user's traceback (once per generation); return the one-line reason."""
        error = w.error or {}
        trace = error.get("traceback") or ""
        if trace and w.generation not in self.shown_tracebacks:
            self.shown_tracebacks.add(w.generation)
            sys.stderr.write(trace if trace.endswith("\n") else trace + "\n")
            sys.stderr.flush()
        return error.get("message") or f"worker {text} before serving"

    def on_boot_failure(self, w: Worker, text: str) -> None:
        reason = self.show_boot_error(w, text)
        if w.generation in self.booted_generations:  # this code did boot: likely transient
            self.restarts["boot_failure"] += 1
            logger.error("Worker %d failed to boot: %s", w.pid, reason)
            self._record_crash()
            return
        fallback = [x for x in self.workers.values() if x.ready and not x.stopping and x.generation != w.generation]
        if fallback:
            # A reload brought code that cannot start: keep serving with the workers we have.
            logger.error("Reload failed: a new worker could not boot: %s. Keeping %d worker(s) running the "
                         "previous code.", reason, len(fallback))
            self.generation = max(x.generation for x in fallback)
            now = time.monotonic()
            for x in list(self.workers.values()):
                if x.generation == w.generation:
                    self.stop_worker(x, signal.SIGTERM, now + QUICK_STOP_GRACE)
            self.reloading = False
            self.status = self._status_text() + " (reload failed)"
            systemd.ready(self.status)
            return
        self.halt_reason = f"worker failed to boot: {reason}"
        systemd.status(f"Failed: {self.halt_reason}")
        self.stop("halt", "boot failure")

    def _record_crash(self) -> None:
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and self.crashes[0] < now - CRASH_WINDOW:
            self.crashes.popleft()
        n = len(self.crashes)
        delay = 0.0 if n <= 1 else min(MAX_BACKOFF, 0.5 * 2 ** (n - 2))
        self.next_spawn_at = now + delay
        if delay:
            logger.warning("%d worker crashes in the last %ds: waiting %.1fs before starting a replacement.",
                           n, CRASH_WINDOW, delay)

    def murder_workers(self) -> None:
        """SIGKILL what outlived its stop deadline; SIGABRT workers whose loop stopped checking in."""
        now = time.monotonic()
        timeout = self.config.timeout
        for w in list(self.workers.values()):
            if w.kill_at is not None and now >= w.kill_at and not w.killed:
                if not w.aborted:
                    logger.warning("Worker %d did not stop in time; sending SIGKILL.", w.pid)
                w.killed = True
                self._kill(w, signal.SIGKILL)
            elif timeout > 0 and not w.aborted and now - w.last_seen > timeout:
                logger.error("Worker %d timed out: its event loop has not checked in for %.1fs (--timeout %gs); "
                             "sending SIGABRT (stack dump), then SIGKILL.", w.pid, now - w.last_seen, timeout)
                w.aborted = True
                self.stop_worker(w, signal.SIGABRT, now + ABORT_GRACE)

    # -- reporting ------------------------------------------------------------------------
    def _status_text(self) -> str:
        serving = sum(1 for w in self.workers.values() if w.ready and not w.stopping)
        return f"{serving} of {self.target} worker(s) serving"

    def _report(self) -> None:
        if self.metrics is not None:
            self.metrics.workers(len(self.workers))
        if self.announced and not self.stopping:
            text = self._status_text()
            if text != self.status:
                self.status = text
                systemd.status(text)
        if self.watchdog and time.monotonic() >= self.next_watchdog:
            self.next_watchdog = time.monotonic() + self.watchdog
            systemd.notify("WATCHDOG=1")


def run(config: Config) -> None:
    """Serve ``config`` with ``config.workers`` worker processes until TERM/INT/QUIT.

    Raises AsgiserveError subclasses for startup failures (bind, --preload import, workers
    that fail to boot: WorkerBootError), all with exit code 3 (2 for ConfigError).
    """
    if config.reload:  # a mode of this supervisor, kept in its own module
        from .reload import ReloadSupervisor

        ReloadSupervisor(config).run()
        return
    Supervisor(config).run()
