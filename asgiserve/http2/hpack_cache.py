"""hpack's encoder and decoder with a cache of the header blocks that left the dynamic table as it was.

HPACK is stateful: a block's bytes (or fields) depend on the dynamic table, and coding it may
change the table. But ``Encoder.encode`` is a function of the header list, the table's entries,
its maximum size and a pending size update, and ``Decoder.decode`` one of the block, the entries,
the maximum size and the decoder's two limits. A block whose coding left the entries unchanged
(every field found in the tables: a server's repeated response heads, a client's repeated
requests) is what the same input gives again from equal entries, and it changes nothing again.
So such a block is kept with a copy of the entries it was coded from, and reused while the table
holds equal entries (a deque comparison: identical entries compare by identity). Anything else (a
pending size update, a field added or evicted, an error) goes through hpack.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import hpack

CACHE_SIZE = 32  # distinct header lists (blocks) per connection; beyond, the cache starts again
# Only small blocks (and decoded lists) are kept, so a connection's cache stays within ~300 KiB
# whatever a client sends: repeated requests and response heads are tens of bytes.
MAX_BLOCK = 1024
MAX_FIELDS = 64


def _table_known(table: Any) -> bool:
    """The table's state as this hpack keeps it; an hpack that keeps it otherwise gets no cache."""
    return (isinstance(getattr(table, "dynamic_entries", None), deque)
            and isinstance(getattr(table, "resized", None), bool) and hasattr(table, "maxsize"))


class CachingEncoder(hpack.Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[tuple[Any, ...], tuple[bytes, deque[Any], int]] = {}
        self.cacheable = _table_known(self.header_table)

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if not self.cacheable or table.resized or not huffman or type(headers) is not list:
            return super().encode(headers, huffman)
        # Plain 2-tuples only: a HeaderTuple (never-indexed) equals the plain tuple of its fields.
        plain = all(type(h) is tuple and len(h) == 2 for h in headers)
        if not plain:
            return super().encode(headers, huffman)
        key = tuple(headers)
        try:
            hit = self.blocks.get(key)
        except TypeError:  # an unhashable field: hpack says what is wrong with it
            return super().encode(headers, huffman)
        if hit is not None and hit[2] == table.maxsize and hit[1] == table.dynamic_entries:
            return hit[0]
        entries, maxsize = deque(table.dynamic_entries), table.maxsize
        block = super().encode(headers, huffman)
        if (len(block) <= MAX_BLOCK and not table.resized and table.maxsize == maxsize
                and table.dynamic_entries == entries):
            if len(self.blocks) >= CACHE_SIZE:
                self.blocks.clear()
            self.blocks[key] = (block, entries, maxsize)
        return block


class CachingDecoder(hpack.Decoder):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[bytes, tuple[list[Any], deque[Any], tuple[int, int, int]]] = {}
        self.cacheable = _table_known(self.header_table)

    def decode(self, data: bytes, raw: bool = False) -> Any:
        table = self.header_table
        if not self.cacheable or not raw or type(data) is not bytes or len(data) > MAX_BLOCK:
            return super().decode(data, raw)
        limits = (table.maxsize, self.max_allowed_table_size, self.max_header_list_size)
        hit = self.blocks.get(data)
        if hit is not None and hit[2] == limits and hit[1] == table.dynamic_entries:
            return list(hit[0])
        entries = deque(table.dynamic_entries)
        headers: Any = super().decode(data, raw)  # a list
        if (len(headers) <= MAX_FIELDS and table.dynamic_entries == entries
                and (table.maxsize, self.max_allowed_table_size, self.max_header_list_size) == limits):
            if len(self.blocks) >= CACHE_SIZE:
                self.blocks.clear()
            self.blocks[data] = (list(headers), entries, limits)
        return headers
