"""hpack's encoder with a cache of header blocks that left its dynamic table as it was.

HPACK encoding is stateful: a block's bytes depend on the dynamic table, and encoding may change
the table. But ``Encoder.encode`` is a function of the header list, the table's entries, its
maximum size and the pending size update: a block whose encoding left the entries unchanged
(every field found in the tables, the usual case for a server's repeated response heads) is the
block the same list gets again from equal entries and maximum size, and it changes nothing again.
So such a block is kept with a copy of the entries it was made from, and returned while the table
still holds equal entries (a deque comparison: identical entries compare by identity). Anything
else (a pending size update, a field added or evicted, never-indexed fields) goes through hpack.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import hpack

CACHE_SIZE = 32  # distinct response heads per connection; beyond, the cache starts again


class CachingEncoder(hpack.Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[tuple[Any, ...], tuple[bytes, deque[Any], int]] = {}
        table = self.header_table
        # The table's state as this hpack keeps it; an hpack that keeps it otherwise gets no cache.
        self.cacheable = (isinstance(getattr(table, "dynamic_entries", None), deque)
                          and isinstance(getattr(table, "resized", None), bool) and hasattr(table, "maxsize"))

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
        if not table.resized and table.maxsize == maxsize and table.dynamic_entries == entries:
            if len(self.blocks) >= CACHE_SIZE:
                self.blocks.clear()
            self.blocks[key] = (block, entries, maxsize)
        return block
