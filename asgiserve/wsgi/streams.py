"""wsgi.input and wsgi.errors: the thread-side streams of one request.

InputStream holds at most the chunk the server last handed over; when the app wants more it
calls ``fetch()``, which blocks the app's thread until the event loop delivers the next
``http.request`` body (one round trip per chunk, and only while the app is reading). So a
1 GiB upload read in pieces keeps memory flat: the server's own receive buffer is bounded
and nothing is read ahead here.

Semantics follow io.BufferedReader: read(n) returns n bytes unless the body ends first;
read()/read(-1)/read(None) return the rest; readline(n) waits for a newline, n bytes or the
end; readlines() never invents a newline. Reads never go past CONTENT_LENGTH. A body that
ends early (client gone) raises ClientDisconnected, an OSError: never a silently short body.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Optional

from .errors import ClientDisconnected as ClientDisconnected  # defined there for mypyc (OSError subclass)

errors_logger = logging.getLogger("asgiserve.error.wsgi")


# fetch() -> (data, more_body); raises ClientDisconnected when the client is gone.
Fetch = Callable[[], "tuple[bytes, bool]"]


class InputStream:
    __slots__ = ("_buf", "_pos", "_more", "_left", "_fetch", "_error")

    def __init__(self, first: bytes, more: bool, limit: Optional[int], fetch: Fetch) -> None:
        self._fetch = fetch
        self._error: Optional[BaseException] = None
        self._left = limit  # bytes CONTENT_LENGTH still allows; None = read to the end
        self._buf = b""
        self._pos = 0
        self._more = True
        self._buf = self._accept(first, more)

    def _accept(self, data: bytes, more: bool) -> bytes:
        left = self._left
        if left is not None:
            if len(data) >= left:
                data = data[:left] if len(data) > left else data
                self._left = 0
                more = False  # never ask the server for bytes past CONTENT_LENGTH
            else:
                self._left = left - len(data)
                if not more:  # surfaces once the app has read what did arrive
                    self._error = ClientDisconnected(
                        f"request body ended {self._left} bytes short of its Content-Length"
                    )
        self._more = more
        return data

    def _next(self) -> bytes:
        """The next chunk from the server; b"" only at the end of the body."""
        while self._more:
            try:
                data, more = self._fetch()
            except OSError as exc:
                self._more = False
                self._error = exc
                raise
            data = self._accept(data, more)
            if data:
                return data
        if self._error is not None:
            raise self._error
        return b""

    def read(self, size: Optional[int] = -1) -> bytes:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if size is None or size < 0:
            parts = [buf[pos:]] if avail else []
            self._buf, self._pos = b"", 0
            while self._more or self._error is not None:
                data = self._next()
                if not data:
                    break
                parts.append(data)
            return b"".join(parts)
        if avail >= size:
            self._pos = pos + size
            return buf[pos : pos + size]
        parts = [buf[pos:]] if avail else []
        need = size - avail
        self._buf, self._pos = b"", 0
        while need > 0:
            data = self._next()
            if not data:
                break
            if len(data) > need:
                parts.append(data[:need])
                self._buf, self._pos = data, need
                break
            parts.append(data)
            need -= len(data)
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, waiting for the server at most once."""
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._next(), 0
        buf, pos = self._buf, self._pos
        end = len(buf) if size is None or size < 0 else min(len(buf), pos + size)
        self._pos = end
        return buf[pos:end]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readline(self, size: Optional[int] = -1) -> bytes:
        if size is None:
            size = -1
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\n", pos)
        if nl >= 0 and (size < 0 or nl + 1 - pos <= size):  # fast path: the line is here
            self._pos = nl + 1
            return buf[pos : nl + 1]
        if size == 0:
            return b""
        parts = []
        got = 0
        while True:
            buf, pos = self._buf, self._pos
            stop = len(buf) if size < 0 else min(len(buf), pos + size - got)
            nl = buf.find(b"\n", pos, stop)
            if nl >= 0:
                parts.append(buf[pos : nl + 1])
                self._pos = nl + 1
                break
            if stop > pos:
                parts.append(buf[pos:stop])
                got += stop - pos
            self._pos = stop
            if 0 <= size <= got:
                break
            data = self._next()
            if not data:
                break
            self._buf, self._pos = data, 0
        return b"".join(parts)

    def readlines(self, hint: Optional[int] = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Apps and frameworks sometimes close wsgi.input; the server owns it, so ignore."""


class ErrorStream:
    """wsgi.errors: what the app writes becomes log records, one per line."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(text).__name__}")
        data = self._partial + text
        if "\n" in data:
            *lines, data = data.split("\n")
            for line in lines:
                errors_logger.error("%s", line)
        self._partial = data
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._partial:
            errors_logger.error("%s", self._partial)
            self._partial = ""
