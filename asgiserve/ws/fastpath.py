"""The common case of WebSocket framing without the library's generic machinery.

Most traffic is whole, unfragmented, uncompressed text or binary messages. For those:

- ``split_messages`` reads complete client frames straight from the received bytes (unmasking
  with websockets' C ``apply_mask``), instead of websockets' generator parser, which copies the
  input into its buffer and builds a Frame per message. It stops at the first frame that is
  anything else (control frames, fragments, RSV bits, unmasked, over the size limit, or
  incomplete) and returns the rest, which goes to websockets' parser, so every rule and every
  error code stays the library's. It runs only when that parser is between frames with nothing
  buffered and no fragmented message under way, so skipping frames leaves its state exactly as
  feeding them would have (a final text or binary frame changes nothing in it). A frame of that
  kind whose payload is still incomplete (a 64 KiB message comes in two or more reads) is kept by
  the caller until it is whole instead of going through the library's buffer; whenever the
  library has to see the input (EOF, the connection no longer open) the kept bytes go first.
- ``frame_header`` builds the 2-10 bytes in front of a server message; the payload is written
  after it without being copied into a serialised frame.

With an extension negotiated (permessage-deflate) neither is used.
"""
from __future__ import annotations

from typing import Optional

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

FIN_TEXT, FIN_BINARY = 0x81, 0x82
__all__ = ["FIN_BINARY", "FIN_TEXT", "apply_mask", "frame_header", "split_messages"]


def split_messages(data: bytes, max_size: Optional[int]) -> tuple[list[tuple[bool, bytes]], int, int]:
    """Whole masked text/binary frames at the start of ``data``: ([(is_text, payload)], bytes used, need).

    ``need`` is 0, or the whole length of the frame that starts at ``used`` when only its payload
    is incomplete and the fast path would take it: the caller may keep its bytes until it is whole
    (its header passed every check here)."""
    messages: list[tuple[bool, bytes]] = []
    pos = 0
    end = len(data)
    view = memoryview(data)
    while end - pos >= 6:
        first = data[pos]
        second = data[pos + 1]
        if (first != FIN_TEXT and first != FIN_BINARY) or second < 0x80:
            break  # not final text/binary, RSV set, or unmasked: the library decides
        length = second & 0x7F
        head = pos + 2
        if length == 126:
            if end - pos < 8:
                break
            length = int.from_bytes(data[head:head + 2], "big")
            head += 2
        elif length == 127:
            if end - pos < 14:
                break
            length = int.from_bytes(data[head:head + 8], "big")
            head += 8
        if max_size is not None and length > max_size:
            break  # the library answers 1009 from the header alone
        start = head + 4
        stop = start + length
        if stop > end:
            return messages, pos, stop - pos
        messages.append((first == FIN_TEXT, apply_mask(view[start:stop], data[head:start])))
        pos = stop
    return messages, pos, 0


def frame_header(opcode: int, length: int) -> bytes:
    """The header of a final, unmasked server frame (opcode 1 text, 2 binary)."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big")
