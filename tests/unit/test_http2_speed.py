"""The shortcuts asgiserve/http2 takes around h2 and hpack for speed: each must leave behaviour unchanged."""
from __future__ import annotations

import logging
import random
from typing import Any

import pytest

pytest.importorskip("h2")

import hpack  # noqa: E402
import hpack.hpack  # noqa: E402

from asgiserve.http2 import connection  # noqa: E402
from asgiserve.http2.hpack_cache import CachingDecoder, CachingEncoder  # noqa: E402


def test_hpack_debug_lines_are_dropped_other_levels_kept(caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = logging.getLogger("hpack.hpack")
    monkeypatch.setattr(hpack.hpack, "log", real)  # as hpack has it, whatever ran before
    level = real.level
    real.setLevel(logging.WARNING)  # (setLevel also clears the loggers' level caches)
    try:
        connection._quiet_hpack()
    finally:
        real.setLevel(level)
    assert isinstance(hpack.hpack.log, connection._QuietDebug)
    with caplog.at_level(logging.DEBUG, logger="hpack.hpack"):
        hpack.hpack.log.debug("dropped %s", 1)
        hpack.hpack.log.warning("kept %s", 2)
    assert [r.getMessage() for r in caplog.records] == ["kept 2"]
    assert connection._QuietLog().debug("%s", 1, exc_info=True) == ""


def test_hpack_logger_left_alone_when_debug_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    real = logging.getLogger("hpack.hpack")
    monkeypatch.setattr(hpack.hpack, "log", real)
    level = real.level
    real.setLevel(logging.DEBUG)
    try:
        connection._quiet_hpack()
    finally:
        real.setLevel(level)
    assert hpack.hpack.log is real


def _heads(seed: int, count: int) -> list[Any]:
    """Response heads as a server sends them: mostly repeats, a date that changes, lengths that vary,
    now and then a table size change (SETTINGS_HEADER_TABLE_SIZE) or a never-indexed field."""
    rng = random.Random(seed)
    out: list[Any] = []
    date = 0
    for _ in range(count):
        if rng.random() < 0.05 and out and not isinstance(out[-1], int):
            # A new table size, with a block after it: hpack emits only the last of two size changes
            # in a row, which loses a shrink to 0 (its bug, not the cache's).
            out.append(rng.choice([0, 64, 100, 256, 4096]))
            continue
        if rng.random() < 0.1:
            date += 1
        head = [(b":status", rng.choice([b"200", b"200", b"404"])), (b"server", b"asgiserve"),
                (b"date", b"Fri, 04 Dec 2026 14:%02d:00 GMT" % (date % 60)),
                (b"content-type", rng.choice([b"text/plain", b"application/json"])),
                (b"content-length", b"%d" % rng.choice([13, 13, 13, 2, rng.randrange(10**6)]))]
        if rng.random() < 0.05:
            head.append(hpack.NeverIndexedHeaderTuple(b"set-cookie", b"s=%d" % rng.randrange(3)))
        if rng.random() < 0.05:
            head.append((b"x-long", b"v" * rng.randrange(50, 300)))
        out.append(head)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_caching_encoder_writes_what_hpack_writes(seed: int) -> None:
    """Block for block and table for table the same as hpack's own encoder, and a decoder follows."""
    cached, plain, decoder = CachingEncoder(), hpack.Encoder(), hpack.Decoder()
    hits = 0
    for head in _heads(seed, 400):
        if isinstance(head, int):
            cached.header_table_size = plain.header_table_size = head  # the decoder learns it from the block
            continue
        before = dict(cached.blocks)
        block = cached.encode(list(head))
        hits += any(block is entry[0] for entry in before.values())
        assert block == plain.encode(list(head))
        assert cached.header_table.dynamic_entries == plain.header_table.dynamic_entries
        assert [tuple(h) for h in decoder.decode(block, raw=True)] == [tuple(h) for h in head]
    assert hits > 20


def test_caching_encoder_does_not_serve_a_never_indexed_field_from_a_plain_one() -> None:
    cached, plain = CachingEncoder(), hpack.Encoder()
    head = [(b":status", b"200"), (b"set-cookie", b"a=1")]
    never = [(b":status", b"200"), hpack.NeverIndexedHeaderTuple(b"set-cookie", b"b=2")]
    for fields in (head, head, never, [never[0], (b"set-cookie", b"b=2")], never, head):
        assert cached.encode(list(fields)) == plain.encode(list(fields))
    assert cached.blocks and all(type(h) is tuple for key in cached.blocks for h in key)


@pytest.mark.parametrize("seed", range(20))
def test_caching_decoder_reads_what_hpack_reads(seed: int) -> None:
    """Requests from a client's encoder (repeats, new paths, never-indexed fields, table size
    changes): the same fields and the same table as hpack's own decoder, errors included."""
    rng = random.Random(seed)
    client, cached, plain = hpack.Encoder(), CachingDecoder(), hpack.Decoder()
    cached.max_header_list_size = plain.max_header_list_size = 2000
    hits = 0
    for i in range(401):
        if rng.random() < 0.03:
            client.header_table_size = rng.choice([0, 64, 256, 4096])
        fields: list[Any] = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"),
                             (b":path", rng.choice([b"/", b"/", b"/a", b"/b?%d" % rng.randrange(50)])),
                             (b"user-agent", b"h2load nghttp2/1.59.0")]
        if rng.random() < 0.1:
            fields.append(hpack.NeverIndexedHeaderTuple(b"authorization", b"token %d" % rng.randrange(3)))
        if i == 400:
            fields.append((b"x-big", b"v" * 3000))  # over max_header_list_size: an error from both
        block = client.encode(fields)
        before = dict(cached.blocks)
        try:
            expected = plain.decode(block, raw=True)
        except hpack.HPACKError as exc:
            with pytest.raises(type(exc)):
                cached.decode(block, raw=True)
            break  # the connection would be closed: HPACK is out of step from here
        got = cached.decode(block, raw=True)
        hits += block in before
        assert got == expected and [type(h) for h in got] == [type(h) for h in expected]
        assert cached.header_table.dynamic_entries == plain.header_table.dynamic_entries
    assert i == 400 and hits > 50


def _pair() -> tuple[Any, Any]:
    import h2.config
    import h2.connection

    from asgiserve.http2.frames import ServerConnection

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = ServerConnection(h2.config.H2Configuration(client_side=False, validate_inbound_headers=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


def test_frames_are_not_repr_ed_and_closed_streams_still_get_rst_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """ServerConnection._receive_frame is h2's without the trace line that built repr(frame)."""
    import h2.events
    from hyperframe.frame import Frame, RstStreamFrame

    from tests.h2client import frame_bytes

    def no_repr(self: Any) -> str:
        raise AssertionError("repr(frame) built")

    client, server = _pair()
    monkeypatch.setattr(Frame, "__repr__", no_repr)  # h2's own connection (the client) would raise now
    head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
    client.send_headers(1, head)
    client.send_data(1, b"x" * 16384)
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events][-2:] == [h2.events.RequestReceived, h2.events.DataReceived]
    server.reset_stream(1)
    server.data_to_send()
    rst = RstStreamFrame(1)
    rst.error_code = 5  # STREAM_CLOSED
    data = b"\x00\x00\x01\x00\x00\x00\x00\x00\x01x"  # one more DATA byte on the reset stream
    assert server.receive_data(data) == [] and server.data_to_send() == frame_bytes(rst)


def test_closed_streams_are_forgotten_near_the_limit_and_the_limit_still_holds() -> None:
    """The concurrency check walks h2's streams only once it keeps as many as the limit."""
    import h2.settings

    from asgiserve.http2.frames import StreamRefused

    client, server = _pair()
    server.local_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 5})
    server.local_settings.acknowledge()
    head = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
    for sid in range(1, 100, 2):  # one at a time, answered: never refused, h2's table stays small
        client.send_headers(sid, head, end_stream=True)
        assert not any(isinstance(e, StreamRefused) for e in server.receive_data(client.data_to_send()))
        server.send_headers(sid, [(b":status", b"204")], end_stream=True)
        assert len(server.streams) <= 5
    events = []
    for sid in range(101, 113, 2):  # six at once: the sixth is refused
        client.send_headers(sid, head, end_stream=True)
        events += server.receive_data(client.data_to_send())
    assert [e.stream_id for e in events if isinstance(e, StreamRefused)] == [111]
