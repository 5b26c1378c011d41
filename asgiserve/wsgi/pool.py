"""The bridge's own bounded thread pool (not the loop's default executor).

Threads start lazily up to ``max_threads`` and then stay. A job submitted while every thread
is busy waits in a FIFO queue; how long it waited is measured when a thread picks it up, so
pool saturation is visible per request (debug log) and in aggregate (``stats()``).
The pool can be shut down and used again (a server may run lifespan more than once).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Optional

logger = logging.getLogger("asgiserve.error")

_STOP = None


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
        for _ in threads:
            gen.jobs.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
