"""build_environ / split_path: every PEP 3333 key, straight from a scope (no server, no threads)."""
from __future__ import annotations

from typing import Any

import pytest

from asgiserve.wsgi.environ import build_environ, split_path

BASE = {"wsgi.version": (1, 0), "wsgi.multithread": True}


def scope(**kw: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "server": ("127.0.0.1", 8000),
        "client": ("10.1.2.3", 54321),
    }
    s.update(kw)
    return s


def env(**kw: Any) -> dict[str, Any]:
    return build_environ(scope(**kw), BASE, "INPUT", "ERRORS")


def test_basic_keys() -> None:
    e = env(method="POST", path="/a/b", raw_path=b"/a/b", query_string=b"x=1&y=%20")
    assert e["REQUEST_METHOD"] == "POST"
    assert e["SCRIPT_NAME"] == ""
    assert e["PATH_INFO"] == "/a/b"
    assert e["QUERY_STRING"] == "x=1&y=%20"
    assert e["SERVER_NAME"] == "127.0.0.1" and e["SERVER_PORT"] == "8000"
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["REMOTE_ADDR"] == "10.1.2.3" and e["REMOTE_PORT"] == "54321"
    assert e["wsgi.url_scheme"] == "http"
    assert e["wsgi.input"] == "INPUT" and e["wsgi.errors"] == "ERRORS"
    assert e["wsgi.version"] == (1, 0)
    assert e["RAW_URI"] == e["REQUEST_URI"] == "/a/b?x=1&y=%20"
    assert all(type(v) is str for k, v in e.items() if not k.startswith("wsgi."))


def test_base_is_not_mutated() -> None:
    env(headers=[(b"x-a", b"1")])
    assert BASE == {"wsgi.version": (1, 0), "wsgi.multithread": True}


def test_http10_and_https() -> None:
    e = env(http_version="1.0", scheme="https")
    assert e["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert e["wsgi.url_scheme"] == "https"


def test_path_info_is_latin1_of_percent_decoded_bytes() -> None:
    # /%FF is one byte 0xFF -> one character U+00FF, not mojibake of a UTF-8 round trip.
    e = env(path="/\ufffd", raw_path=b"/%FF")
    assert e["PATH_INFO"] == "/\xff"
    # UTF-8 "é" (C3 A9) arrives as two latin-1 characters, per PEP 3333.
    e = env(path="/\xe9", raw_path=b"/%C3%A9")
    assert e["PATH_INFO"] == "/\xc3\xa9"
    assert e["PATH_INFO"].encode("latin-1").decode("utf-8") == "/\xe9"
    # %2F decodes like any other escape (CGI); RAW_URI keeps the original.
    e = env(path="/a/b", raw_path=b"/a%2Fb")
    assert e["PATH_INFO"] == "/a/b" and e["RAW_URI"] == "/a%2Fb"


def test_path_without_raw_path() -> None:
    e = env(path="/caf\xe9", raw_path=None)
    assert e["PATH_INFO"] == "/caf\xc3\xa9"


def test_raw_path_ignored_when_a_middleware_rewrote_path() -> None:
    e = env(path="/rewritten", raw_path=b"/original")
    assert e["PATH_INFO"] == "/rewritten"


@pytest.mark.parametrize(
    "root, path, raw, script, info",
    [
        ("/app", "/app/x", b"/app/x", "/app", "/x"),  # ASGI: path includes root_path
        ("/app", "/app", b"/app", "/app", ""),
        ("/app", "/app/", b"/app/", "/app", "/"),
        ("/app/", "/app/x", b"/app/x", "/app", "/x"),
        ("/app", "/apple/x", b"/apple/x", "/app", "/apple/x"),  # never "le/x"
        ("/app", "/app/x", b"/x", "/app", "/x"),  # server prepended root_path a proxy stripped
        ("/app", "/x", b"/app/x", "/app", "/x"),  # older mounts: path relative to root_path
        ("/app", "/app/%", b"/app/%25", "/app", "/%"),
        ("/", "/x", b"/x", "", "/x"),
        ("", "/x", b"/x", "", "/x"),
        ("/p/app", "/p/app/x", b"/app/x", "/p/app", "/x"),  # nested: server root + mount
        ("/app", "/app/\xff", b"/app/%FF", "/app", "/\xc3\xbf"),
    ],
)
def test_script_name_on_segment_boundary(root: str, path: str, raw: bytes, script: str, info: str) -> None:
    assert split_path(scope(root_path=root, path=path, raw_path=raw)) == (script, info)


def test_script_name_non_ascii_root() -> None:
    e = env(root_path="/\xe9", path="/\xe9/x", raw_path=b"/%C3%A9/x")
    assert e["SCRIPT_NAME"] == "/\xc3\xa9" and e["PATH_INFO"] == "/x"


def test_content_headers_without_http_prefix() -> None:
    e = env(headers=[(b"content-type", b"text/plain"), (b"content-length", b"12")])
    assert e["CONTENT_TYPE"] == "text/plain" and e["CONTENT_LENGTH"] == "12"
    assert "HTTP_CONTENT_TYPE" not in e and "HTTP_CONTENT_LENGTH" not in e


def test_absent_content_headers_are_absent() -> None:
    e = env()
    assert "CONTENT_TYPE" not in e and "CONTENT_LENGTH" not in e


def test_headers_mapped_and_repeats_joined() -> None:
    e = env(
        headers=[
            (b"host", b"example.com"),
            (b"x-multi", b"a"),
            (b"accept", b"text/html"),
            (b"x-multi", b"b"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"user-agent", b"t\xe9st"),
        ]
    )
    assert e["HTTP_HOST"] == "example.com"
    assert e["HTTP_X_MULTI"] == "a,b"
    assert e["HTTP_ACCEPT"] == "text/html"
    assert e["HTTP_COOKIE"] == "a=1; b=2"
    assert e["HTTP_USER_AGENT"] == "t\xe9st"  # header bytes are latin-1


def test_underscore_headers_are_dropped() -> None:
    e = env(headers=[(b"x-forwarded-for", b"1.1.1.1"), (b"x_forwarded_for", b"6.6.6.6"), (b"a_b", b"x")])
    assert e["HTTP_X_FORWARDED_FOR"] == "1.1.1.1"
    assert "HTTP_A_B" not in e


def test_uppercase_header_names_from_lenient_servers() -> None:
    e = env(headers=[(b"X-Thing", b"1"), (b"Content-Type", b"a/b")])
    assert e["HTTP_X_THING"] == "1" and e["CONTENT_TYPE"] == "a/b"


def test_duplicate_content_length_keeps_first() -> None:
    e = env(headers=[(b"content-length", b"5"), (b"content-length", b"5")])
    assert e["CONTENT_LENGTH"] == "5"


def test_unix_socket_server_uses_host_header() -> None:
    e = env(server=("/tmp/sock", None), client=None, headers=[(b"host", b"example.org:8080")])
    assert (e["SERVER_NAME"], e["SERVER_PORT"]) == ("example.org", "8080")
    assert e["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in e  # present, as gunicorn does
    e = env(server=None, client=None, scheme="https", headers=[(b"host", b"[::1]")])
    assert (e["SERVER_NAME"], e["SERVER_PORT"]) == ("[::1]", "443")
    e = env(server=None, client=None)
    assert (e["SERVER_NAME"], e["SERVER_PORT"]) == ("localhost", "80")
