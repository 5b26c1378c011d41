"""The ASGI lifespan protocol: startup and shutdown around serving, each bounded by a timeout.

Modes: "on" requires the app to support lifespan; "auto" treats an app that raises or returns
before answering startup as not supporting it (and serves anyway); "off" never calls it.
An explicit ``lifespan.startup.failed`` is always fatal, whatever the mode.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

from ..errors import LifespanError

logger = logging.getLogger("asgiserve.error")


class Lifespan:
    def __init__(
        self,
        app: Callable[..., Any],
        mode: str,
        startup_timeout: float,
        shutdown_timeout: float,
    ) -> None:
        self.app = app
        self.mode = mode
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self.task: Optional[asyncio.Task[None]] = None
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.startup_done = asyncio.Event()
        self.shutdown_done = asyncio.Event()
        self.failure: Optional[str] = None
        self.phase = "startup"

    async def startup(self) -> None:
        """Run startup; raise LifespanError when the app says it failed (or must support it and can't)."""
        if self.mode == "off":
            return
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self.queue.put_nowait({"type": "lifespan.startup"})
        self.task = asyncio.ensure_future(self.run(scope))
        try:
            await asyncio.wait_for(self.startup_done.wait(), self.startup_timeout or None)
        except asyncio.TimeoutError:
            self.task.cancel()
            raise LifespanError(f"Lifespan startup did not complete within {self.startup_timeout:g}s") from None
        if self.failure is not None:
            raise LifespanError(f"Application startup failed: {self.failure}")
        if not self.supported:
            return
        logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.failure is not None or self.task.done():
            return  # never started (or already gone): there is nothing to shut down
        self.phase = "shutdown"
        self.queue.put_nowait({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.shutdown_done.wait(), self.shutdown_timeout or None)
        except asyncio.TimeoutError:
            logger.error("Lifespan shutdown did not complete within %gs.", self.shutdown_timeout)
            self.task.cancel()
            return
        if self.failure is not None:
            logger.error("Application shutdown failed: %s", self.failure)
        else:
            logger.info("Application shutdown complete.")

    async def run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:
            if self.phase == "startup" and not self.startup_done.is_set():
                if self.mode == "auto":
                    logger.info("ASGI 'lifespan' protocol appears unsupported (%s).", type(exc).__name__)
                    self.supported = False
                else:
                    logger.error("Exception in 'lifespan' protocol", exc_info=exc)
                    self.failure = f"{type(exc).__name__}: {exc}"
            else:
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
                if not isinstance(exc, Exception):
                    raise
        else:
            if not self.startup_done.is_set():
                if self.mode == "auto":
                    logger.info("ASGI 'lifespan' protocol appears unsupported (the app returned).")
                    self.supported = False
                else:
                    self.failure = "the app returned without answering lifespan.startup"
        finally:
            self.startup_done.set()
            self.shutdown_done.set()

    async def receive(self) -> dict[str, Any]:
        return await self.queue.get()

    async def send(self, message: dict[str, Any]) -> None:
        mtype = message.get("type")
        if mtype == "lifespan.startup.complete" and self.phase == "startup" and not self.startup_done.is_set():
            self.startup_done.set()
        elif mtype == "lifespan.startup.failed" and self.phase == "startup" and not self.startup_done.is_set():
            self.failure = str(message.get("message", "")) or "no message"
            self.startup_done.set()
        elif mtype == "lifespan.shutdown.complete" and self.phase == "shutdown":
            self.shutdown_done.set()
        elif mtype == "lifespan.shutdown.failed" and self.phase == "shutdown":
            self.failure = str(message.get("message", "")) or "no message"
            self.shutdown_done.set()
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message {mtype!r} during {self.phase}")
