"""The bridge's own bounded thread pool (not the loop's default executor).

Threads start lazily up to ``max_threads`` and then stay. A job submitted while every thread
is busy waits in a FIFO queue; how long it waited is measured when a thread picks it up, so
pool saturation is visible per request (debug log) and in aggregate (``stats()``).
The pool can be shut down and used again (a server may run lifespan more than once).

--metrics (asgiserve/metrics.py) turns on ``track_waits``: each pool then also counts every
job's wait in a histogram, under the lock it takes anyway (off, that costs one ``is not None``
check per job), and the bridge marks the requests it serves with its pool (SERVED_BY_POOL), so
a server's figures show the pools that served it, also one an ASGI app mounts itself.
"""
from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
import weakref
from bisect import bisect_left
from typing import Any, Callable, Optional

logger = logging.getLogger("asgiserve.error")

_STOP = None

# Set in a request's context when a bridge serves it (only while --metrics is on), so the
# request counts as WSGI even when an ASGI app mounts the bridge (examples/sync_vs_async.py).
SERVED_BY_POOL: "contextvars.ContextVar[Optional[ThreadPool]]" = contextvars.ContextVar("asgiserve_wsgi_pool",
                                                                                       default=None)
_POOLS: "weakref.WeakSet[ThreadPool]" = weakref.WeakSet()
_wait_bounds: Optional[tuple[float, ...]] = None


def track_waits(bounds: tuple[float, ...]) -> None:
    """--metrics: every pool, existing or future, counts its queue waits into these buckets."""
    global _wait_bounds
    _wait_bounds = bounds
    for pool in list(_POOLS):
        pool.track(bounds)


class _Generation:
    """The threads serving one queue; shutdown() retires a generation and starts a new one."""

    __slots__ = ("jobs", "threads", "idle", "pending")

    def __init__(self) -> None:
        self.jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.threads: set[threading.Thread] = set()
        self.idle = 0  # threads of this generation not running a job
        self.pending = 0  # jobs in this generation's queue


class ThreadPool:
    def __init__(self, max_threads: int, name: str = "asgiserve-wsgi") -> None:
        if max_threads < 1:
            raise ValueError("threads must be at least 1")
        self.max_threads = max_threads
        self.name = name
        self._lock = threading.Lock()
        self._gen = _Generation()
        self._counter = 0
        self.busy = 0
        self.queued = 0
        self.completed = 0
        self.waited = 0  # jobs that found every thread busy
        self.total_wait = 0.0
        self.max_wait = 0.0
        self.open = True  # false after shutdown() until a job starts a new generation
        self.wait_bounds: tuple[float, ...] = ()
        self.wait_counts: Optional[list[int]] = None  # per bucket (the last is +Inf), with --metrics
        self.wait_sum = 0.0
        _POOLS.add(self)
        if _wait_bounds is not None:
            self.track(_wait_bounds)

    def track(self, bounds: tuple[float, ...]) -> None:
        with self._lock:
            if self.wait_counts is None or self.wait_bounds != bounds:
                self.wait_bounds = bounds
                self.wait_counts = [0] * (len(bounds) + 1)
                self.wait_sum = 0.0

    def wait_dump(self) -> list[float]:
        """The queue-wait histogram: per-bucket counts, then the sum of the waits."""
        with self._lock:
            counts = self.wait_counts
            return [*counts, self.wait_sum] if counts is not None else []

    def submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` on a pool thread; never blocks the caller."""
        with self._lock:
            gen = self._gen
            self.queued += 1
            gen.pending += 1
            saturated = gen.pending > gen.idle
            if saturated and len(gen.threads) < self.max_threads:
                self._counter += 1
                thread = threading.Thread(
                    target=self._work, args=(gen,), name=f"{self.name}-{self._counter}", daemon=True
                )
                gen.threads.add(thread)
                gen.idle += 1
                if not self.open:  # used again after shutdown(): by a new server, whose figures start at 0
                    self.open = True
                    if self.wait_counts is not None:
                        self.wait_counts = [0] * len(self.wait_counts)
                        self.wait_sum = 0.0
                thread.start()
                saturated = False
        gen.jobs.put((fn, arg, time.perf_counter(), saturated))

    def _work(self, gen: _Generation) -> None:
        jobs = gen.jobs
        lock = self._lock
        while True:
            item = jobs.get()
            if item is _STOP:
                with lock:
                    gen.idle -= 1
                    gen.threads.discard(threading.current_thread())
                return
            fn, arg, submitted, saturated = item
            wait = time.perf_counter() - submitted
            with lock:
                gen.idle -= 1
                gen.pending -= 1
                self.queued -= 1
                self.busy += 1
                counts = self.wait_counts
                if counts is not None:
                    counts[bisect_left(self.wait_bounds, wait)] += 1
                    self.wait_sum += wait
                if saturated:
                    self.waited += 1
                    self.total_wait += wait
                    if wait > self.max_wait:
                        self.max_wait = wait
            if saturated:
                logger.debug("WSGI pool saturated: request waited %.1f ms for a thread", wait * 1000)
            try:
                fn(arg)
            except BaseException:  # a job must never kill its thread; jobs report their own errors
                logger.exception("Unhandled error in a WSGI pool thread")
            finally:
                with lock:
                    self.busy -= 1
                    gen.idle += 1
                    self.completed += 1

    def stats(self) -> dict[str, Any]:
        """A snapshot of the pool's saturation figures (waits in seconds)."""
        with self._lock:
            return {
                "threads": len(self._gen.threads),
                "max_threads": self.max_threads,
                "busy": self.busy,
                "idle": self._gen.idle,
                "queued": self.queued,
                "completed": self.completed,
                "waited": self.waited,
                "total_wait": self.total_wait,
                "max_wait": self.max_wait,
            }

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Retire the threads once they finish the jobs already queued; True if all stopped in time.

        Later submits start a fresh generation of threads, so nothing submitted is ever lost.
        """
        with self._lock:
            gen, self._gen = self._gen, _Generation()
            threads = list(gen.threads)
            self.open = False
        for _ in threads:
            gen.jobs.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
