"""wsgi.file_wrapper: lets the bridge recognise a file response and send it efficiently.

When the app returns one of these (unwrapped) for a real file and the server offers the
``http.response.zerocopysend`` extension, the bridge hands the file to the server (sendfile
where the transport allows) and frees the thread at once. Otherwise it is iterated in
blocks like any other response: never read whole into memory.
"""
from __future__ import annotations

import io
from typing import Any, Iterator, Optional

# The bridge reads at least this much per block when it iterates a file itself.
MIN_BLOCK = 64 * 1024


class FileWrapper:
    __slots__ = ("filelike", "blksize", "_closed")

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.blksize
        while True:
            data = read(size)
            if not data:
                return
            yield data

    def fileno(self) -> Optional[int]:
        """The OS file descriptor when the file is a real, seekable file; else None."""
        try:
            fd = self.filelike.fileno()
            if not self.filelike.seekable():
                return None
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        return fd if isinstance(fd, int) and fd >= 0 else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
