"""Response head validation and serialisation (pure functions)."""
from __future__ import annotations

import pytest

from asgiserve.http.response import (
    ResponseError,
    default_headers,
    error_response,
    prepare_head,
    status_line,
)


def test_status_lines_known_and_unknown() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(299) == b"HTTP/1.1 299 \r\n"


@pytest.mark.parametrize("status", [99, 100, 101, 199, 600, "200", 200.0, None, True])
def test_invalid_final_status_rejected(status: object) -> None:
    with pytest.raises(ResponseError):
        prepare_head(status, [])


def test_headers_serialised_and_framing_headers_extracted() -> None:
    head = prepare_head(
        201,
        [
            (b"Content-Type", b"text/plain"),
            (b"content-length", b"5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"Close"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ],
    )
    assert head.status == 201
    assert head.content_length == 5
    assert head.close is True
    assert head.header_bytes == b"Content-Type: text/plain\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"
    assert len(head.headers) == 6  # the access log sees what the app sent


@pytest.mark.parametrize(
    "header",
    [
        (b"x-a", b"v\r\nInjected: 1"),
        (b"x-a", b"v\nx"),
        (b"x-a", b"v\x00"),
        (b"bad name", b"v"),
        (b"bad:name", b"v"),
        (b"", b"v"),
        (b"x-a\r\n", b"v"),
        ("x-str", b"v"),
        (b"x-str", "v"),
    ],
)
def test_invalid_headers_rejected(header: tuple[object, object]) -> None:
    with pytest.raises(ResponseError):
        prepare_head(200, [header])  # type: ignore[list-item]


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1.5", b"", b"0x10", b"+3"])
def test_invalid_content_length_rejected(value: bytes) -> None:
    with pytest.raises(ResponseError):
        prepare_head(200, [(b"content-length", value)])


def test_conflicting_content_lengths_rejected_identical_collapsed() -> None:
    with pytest.raises(ResponseError):
        prepare_head(200, [(b"content-length", b"1"), (b"content-length", b"2")])
    head = prepare_head(200, [(b"content-length", b"3"), (b"Content-Length", b"3")])
    assert head.content_length == 3


def test_default_headers() -> None:
    both = default_headers(True, True, [(b"x-extra", b"1")])
    assert both.startswith(b"server: asgiserve\r\ndate: ")
    assert both.endswith(b" GMT\r\nx-extra: 1\r\n")
    assert default_headers(False, False, []) == b""


def test_error_response_is_self_framed_and_closes() -> None:
    raw = error_response(400, "Bad Request: nope", b"server: asgiserve\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in head
    assert b"content-length: %d" % len(body) in head
    assert body == b"Bad Request: nope\n"


def test_repeated_headers_give_the_same_head_and_checks_still_apply() -> None:
    """Validated (name, value) tuples are remembered; a repeat must not skip any rule."""
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"7"), (b"x-n", b"1")]
    first = prepare_head(200, headers)
    again = prepare_head(200, list(headers))
    for head in (first, again):
        assert head.header_bytes == b"content-type: text/plain\r\nx-n: 1\r\n"
        assert head.content_length == 7
        assert head.headers == headers
    # A remembered Content-Length still conflicts with a different one, in either order.
    for pair in ([(b"content-length", b"7"), (b"content-length", b"8")],
                 [(b"content-length", b"8"), (b"content-length", b"7")]):
        with pytest.raises(ResponseError):
            prepare_head(200, pair)
    # Lists (not tuples) and long values take the full path and give the same bytes.
    long_value = b"v" * 300
    for _ in range(2):
        head = prepare_head(200, [[b"x-a", b"1"], (b"x-long", long_value)])  # type: ignore[list-item]
        assert head.header_bytes == b"x-a: 1\r\nx-long: " + long_value + b"\r\n"
    # Date/Server the app set are still seen as its own on a repeat.
    for _ in range(2):
        assert prepare_head(200, [(b"server", b"mine")]).own_defaults == frozenset({b"server"})
    # An unhashable value inside a tuple is still an error, not a crash of another kind.
    with pytest.raises((ResponseError, TypeError)):
        prepare_head(200, [(b"x-a", bytearray(b"v"))])  # type: ignore[list-item]


def test_int_enum_status_accepted_as_its_int() -> None:
    from http import HTTPStatus

    head = prepare_head(HTTPStatus.NOT_FOUND, [])
    assert head.status == 404 and type(head.status) is int


def test_trailers_lower_cased_framing_fields_dropped_and_injection_refused() -> None:
    from asgiserve.http.response import prepare_trailers

    assert prepare_trailers([(b"X-Checksum", b"1"), (b"Content-Length", b"5"), (b"transfer-encoding", b"x"),
                             (b"TE", b"trailers"), (b"grpc-status", b"0")]) == [(b"x-checksum", b"1"), (b"grpc-status", b"0")]
    for bad in ([(b"x", b"a\r\nb")], [(b":status", b"200")], [("x", b"1")], [(b"", b"1")]):
        with pytest.raises(ResponseError):
            prepare_trailers(bad)


def test_early_hint_links_are_bytes_without_line_breaks() -> None:
    from asgiserve.http.response import prepare_links

    assert prepare_links([b" </a.css>; rel=preload ", bytearray(b"</b.js>"), b""]) == [b"</a.css>; rel=preload", b"</b.js>"]
    for bad in ([b"</a>\r\nx: y"], ["</a>"], [b"\x00"]):
        with pytest.raises(ResponseError):
            prepare_links(bad)  # type: ignore[arg-type]
