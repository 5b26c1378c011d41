"""wsgi.input semantics against io's, with the server side faked by a list of chunks."""
from __future__ import annotations

import io
from typing import Optional

import pytest

from asgiserve.wsgi.streams import ClientDisconnected, ErrorStream, InputStream


class Feed:
    """fetch() for InputStream: hands out chunks, then ends (or disconnects)."""

    def __init__(self, chunks: list[bytes], disconnect: bool = False) -> None:
        self.chunks = list(chunks)
        self.disconnect = disconnect
        self.calls = 0

    def __call__(self) -> tuple[bytes, bool]:
        self.calls += 1
        if not self.chunks:
            if self.disconnect:
                raise ClientDisconnected("gone")
            raise AssertionError("fetched past the end of the body")
        data = self.chunks.pop(0)
        return data, bool(self.chunks) or self.disconnect


def stream(chunks: list[bytes], limit: Optional[int] = None, disconnect: bool = False) -> InputStream:
    """The first chunk arrives with the head (as the bridge does); the rest on demand."""
    feed = Feed(chunks[1:], disconnect)
    more = bool(chunks[1:]) or disconnect
    return InputStream(chunks[0] if chunks else b"", more, limit, feed)


BODY = b"line one\nline two\n\nlast line without newline"
SPLITS = [
    [BODY],
    [BODY[:3], BODY[3:9], BODY[9:10], BODY[10:]],
    [bytes([b]) for b in BODY],
    [b"", BODY[:20], b"", BODY[20:]],
]


@pytest.mark.parametrize("chunks", SPLITS)
def test_read_all(chunks: list[bytes]) -> None:
    assert stream(chunks).read() == BODY
    assert stream(chunks).read(-1) == BODY
    assert stream(chunks).read(None) == BODY


@pytest.mark.parametrize("chunks", SPLITS)
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_read_n_matches_bytesio(chunks: list[bytes], n: int) -> None:
    s, ref = stream(chunks), io.BytesIO(BODY)
    while True:
        got, want = s.read(n), ref.read(n)
        assert got == want
        if not want:
            break
    assert s.read() == b"" and s.read(5) == b""


@pytest.mark.parametrize("chunks", SPLITS)
def test_read_n_then_read_loses_nothing(chunks: list[bytes]) -> None:
    s = stream(chunks)
    assert s.read(5) == BODY[:5]
    assert s.read() == BODY[5:]


def test_read_zero() -> None:
    s = stream([b"abc"])
    assert s.read(0) == b""
    assert s.read() == b"abc"


@pytest.mark.parametrize("chunks", SPLITS)
def test_readline_matches_bytesio(chunks: list[bytes]) -> None:
    s, ref = stream(chunks), io.BytesIO(BODY)
    while True:
        got, want = s.readline(), ref.readline()
        assert got == want
        if not want:
            break


@pytest.mark.parametrize("chunks", SPLITS)
@pytest.mark.parametrize("n", [1, 3, 9, 10, 100])
def test_readline_n_matches_bytesio(chunks: list[bytes], n: int) -> None:
    s, ref = stream(chunks), io.BytesIO(BODY)
    while True:
        got, want = s.readline(n), ref.readline(n)
        assert got == want
        if not want:
            break


def test_readline_n_waits_for_data_instead_of_returning_empty() -> None:
    # The first chunk is empty and the line arrives later: readline(5) must wait for it.
    s = stream([b"", b"ab", b"cdef\n"])
    assert s.readline(5) == b"abcde"
    assert s.readline(5) == b"f\n"
    assert s.readline(5) == b""


def test_readline_zero_and_none() -> None:
    s = stream([b"ab\ncd"])
    assert s.readline(0) == b""
    assert s.readline(None) == b"ab\n"


@pytest.mark.parametrize("chunks", SPLITS)
def test_readlines_and_iteration(chunks: list[bytes]) -> None:
    expected = io.BytesIO(BODY).readlines()
    assert stream(chunks).readlines() == expected
    assert list(stream(chunks)) == expected
    assert expected[-1] == b"last line without newline"  # no newline invented


def test_readlines_hint() -> None:
    assert stream([BODY]).readlines(5) == io.BytesIO(BODY).readlines(5)
    assert stream([BODY]).readlines(0) == io.BytesIO(BODY).readlines(0)


def test_empty_body() -> None:
    s = stream([b""])
    assert s.read() == b"" and s.read(10) == b"" and s.readline() == b""
    assert s.readlines() == [] and list(s) == []


def test_read1_and_readinto() -> None:
    s = stream([b"abc", b"defg"])
    assert s.read1(2) == b"ab"
    assert s.read1() == b"c"
    buf = bytearray(10)
    assert s.readinto(buf) == 4 and buf[:4] == b"defg"
    assert s.read1() == b""


def test_never_reads_past_content_length() -> None:
    feed = Feed([b"56789", b"EXTRA"])
    s = InputStream(b"01234", True, 8, feed)
    assert s.read() == b"01234567"
    assert feed.calls == 1  # the stream never asked for bytes past CONTENT_LENGTH
    s = InputStream(b"0123456789", True, 4, Feed([]))
    assert s.readline() == b"0123" and s.read() == b""


def test_content_length_reached_exactly_stops_fetching() -> None:
    feed = Feed([b"def"])
    s = InputStream(b"abc", True, 3, feed)
    assert s.read() == b"abc" and feed.calls == 0


@pytest.mark.parametrize("method", ["read", "read_n", "readline", "readlines", "iter"])
def test_disconnect_mid_body_raises_oserror(method: str) -> None:
    s = stream([b"partial line", b" more"], limit=100, disconnect=True)
    with pytest.raises(OSError):
        if method == "read":
            s.read()
        elif method == "read_n":
            s.read(50)
        elif method == "readline":
            s.readline()
        elif method == "readlines":
            s.readlines()
        else:
            list(s)
    with pytest.raises(OSError):  # and it stays an error, never a quiet EOF
        s.read()


def test_body_ending_short_of_content_length_raises() -> None:
    s = InputStream(b"abc", True, 10, Feed([b"de"]))
    assert s.read(5) == b"abcde"
    with pytest.raises(ClientDisconnected):
        s.read(1)
    s = InputStream(b"", False, 10, Feed([]))
    with pytest.raises(ClientDisconnected):
        s.read()


def test_error_stream_logs_lines(caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorStream()
    with caplog.at_level("ERROR", logger="asgiserve.error.wsgi"):
        errors.write("first\nsec")
        errors.writelines(["ond\n", "third"])
        errors.flush()
    assert [r.getMessage() for r in caplog.records] == ["first", "second", "third"]
    with pytest.raises(TypeError):
        errors.write(b"bytes")  # type: ignore[arg-type]
