"""Request-head size limits: one definition both parser adapters apply.

Rules (sizes are measured on the *parsed* head, so both parsers agree byte for byte):

* request line: ``len(method) + 1 + len(target) + 1 + len("HTTP/1.1")`` above
  ``limit_request_line`` -> 414.
* header fields: more than ``limit_request_fields`` field lines -> 431; one field whose
  ``len(name) + len(": ") + len(value)`` (value with surrounding whitespace stripped) is above
  ``limit_request_field_size`` -> 431. Trailer fields of a chunked body obey the same two limits.
* streaming: the rules apply as soon as an incomplete line is known to break them, so a
  request line or header line that never ends is cut off at its limit. For a field line that
  is the canonical size of what arrived so far (``FieldMeter``), which never exceeds the size
  of the finished line: how the bytes were split cannot change the outcome.
* memory guard: a head that is still incomplete while more than ``budget`` raw bytes of it are
  buffered -> 431. ``budget`` is the size of the largest head the rules above allow, so a
  legal head never hits it (whitespace padding aside), and no client can grow server memory.

Syntax errors found in the same bytes win over size errors (both parsers report the first
problem in byte order): a head that is both malformed and too large may get 400 instead of
414/431. Heads that are only too large get 414/431 on both parsers.
"""
from __future__ import annotations

from typing import Any

# "HTTP/1.1" plus the two spaces of the canonical request line.
REQUEST_LINE_OVERHEAD = 10
# The longest method any adapter accepts (framing.METHODS), so adapters can skip the exact
# request-line computation while the target is obviously short enough.
LONGEST_METHOD = 11


class Reject(Exception):
    """Raised inside an adapter when the input must be refused with ``status``.

    Adapters turn it into a ``ParseError`` event; it never leaves the adapter.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class HeadLimits:
    """The configured limits, plus the derived values the adapters test on the hot path."""

    __slots__ = ("line", "fields", "field_size", "budget", "target_fast_max")

    def __init__(self, line: int, fields: int, field_size: int) -> None:
        self.line = line
        self.fields = fields
        self.field_size = field_size
        # Largest raw head the per-line rules allow: request line + fields + CRLFs.
        self.budget = line + 2 + fields * (field_size + 2) + 2
        # Targets up to this length fit with any accepted method; longer ones get the
        # exact computation in check_request_line.
        self.target_fast_max = line - REQUEST_LINE_OVERHEAD - LONGEST_METHOD

    @classmethod
    def from_config(cls, config: Any) -> "HeadLimits":
        return cls(config.limit_request_line, config.limit_request_fields, config.limit_request_field_size)

    def check_request_line(self, method: bytes, target: bytes) -> None:
        if len(method) + len(target) + REQUEST_LINE_OVERHEAD > self.line:
            raise Reject(414, "Request line too long")

    def check_fields(self, fields: list[tuple[bytes, bytes]]) -> None:
        """Count and per-field size; the same rule for head fields and trailer fields."""
        if len(fields) > self.fields:
            raise Reject(431, "Too many header fields")
        limit = self.field_size - 2
        for name, value in fields:
            if len(name) + len(value) > limit:
                raise Reject(431, "Header field too large")

    def check_field(self, count: int, name: bytes, value: bytes) -> None:
        """The same rule as check_fields, applied to the ``count``-th field as it arrives."""
        if count > self.fields:
            raise Reject(431, "Too many header fields")
        if len(name) + len(value) > self.field_size - 2:
            raise Reject(431, "Header field too large")

    def check_pending(self, pending: int) -> None:
        """Memory guard for an incomplete head (or trailer section) of ``pending`` raw bytes."""
        if pending > self.budget:
            raise Reject(431, "Request header section too large")


class FieldMeter:
    """Canonical size (name + value, OWS excluded) of a field line arriving in pieces.

    ``add`` returns a lower bound of the finished line's size: whitespace (and a CR that may
    be the start of the line's CRLF) is only counted once a visible byte follows it.
    """

    __slots__ = ("size", "in_value", "started", "blank")

    def __init__(self) -> None:
        self.size = 0
        self.in_value = False
        self.started = False
        self.blank = 0

    def add(self, chunk: bytes) -> int:
        if not self.in_value:
            colon = chunk.find(b":")
            if colon < 0:
                self.size += len(chunk.rstrip(b"\r"))
                return self.size
            self.size += colon
            self.in_value = True
            chunk = chunk[colon + 1 :]
        if not self.started:
            chunk = chunk.lstrip(b" \t")
            if not chunk:
                return self.size
            self.started = True
        visible = chunk.rstrip(b" \t\r")
        if visible:
            self.size += self.blank + len(visible)
            self.blank = len(chunk) - len(visible)
        else:
            self.blank += len(chunk)
        return self.size

    def check(self, limits: HeadLimits, chunk: bytes) -> None:
        if self.add(chunk) > limits.field_size - 2:
            raise Reject(431, "Header field too large")
