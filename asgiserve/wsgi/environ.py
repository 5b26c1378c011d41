"""PEP 3333 environ from an ASGI ``http`` scope. Pure: no I/O, no threads, no logging.

Rules (PEP 3333 / CGI, and what real servers settled on):
- SCRIPT_NAME comes from ``root_path``; it is removed from the path only on a segment
  boundary, so a mount at ``/app`` never turns ``/apple/x`` into ``le/x``.
- PATH_INFO is the percent-decoded *bytes* of the raw path as latin-1 ("bytes-as-unicode"),
  so ``/%FF`` is the single character U+00FF, never mojibake from a UTF-8 round trip.
- CONTENT_TYPE / CONTENT_LENGTH carry no HTTP_ prefix; other headers are HTTP_*; repeats
  are joined with "," (Cookie with "; ", since a comma breaks cookie parsing).
- Header names containing "_" are dropped: "X_Forwarded_For" would otherwise land on the
  same key as "X-Forwarded-For" and spoof it.
"""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import unquote_to_bytes

# Raw header name -> environ key ("" = dropped). Bounded: names come from clients.
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 1024
_SPECIAL = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2", "2.0": "HTTP/2", "3": "HTTP/3"}
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def header_key(name: bytes) -> str:
    """The environ key for a header name, or "" when the header must be dropped."""
    key = _KEYS.get(name)
    if key is None:
        lname = name.lower()
        if b"_" in lname:
            key = ""
        else:
            key = _SPECIAL.get(lname) or "HTTP_" + lname.decode("latin-1").upper().replace("-", "_")
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


def _latin1(text: str) -> str:
    """A str of code points -> the WSGI form: its UTF-8 bytes, each as one latin-1 character."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def split_path(scope: Any) -> tuple[str, str]:
    """(SCRIPT_NAME, PATH_INFO) for a scope, both in the WSGI latin-1 form."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    raw: Optional[bytes] = scope.get("raw_path")
    full: Optional[str] = None
    if raw:
        decoded = unquote_to_bytes(raw) if raw.find(b"%") >= 0 else raw
        full_raw = decoded.decode("latin-1")
        # raw_path is trusted only when it says what `path` says: a middleware may rewrite
        # `path` and forget `raw_path`. Servers decode invalid UTF-8 with "replace".
        as_text = full_raw if decoded.isascii() else decoded.decode("utf-8", "replace")
        if as_text == path:
            full = full_raw
        elif root and path.endswith(as_text):
            # The server prepended (part of) root_path to a path a proxy had stripped.
            prefix = path[: len(path) - len(as_text)]
            if root.startswith(prefix):
                full = _latin1(prefix) + full_raw
        elif root and as_text == root + path:
            full = full_raw  # older mounts: `path` relative to root_path, raw_path whole
    if full is None:
        full = _latin1(path)
    script = _latin1(root).rstrip("/")
    if script and full.startswith(script) and (len(full) == len(script) or full[len(script)] == "/"):
        return script, full[len(script):]
    return script, full


def build_environ(scope: Any, base: dict[str, Any], stream: Any, errors: Any) -> dict[str, Any]:
    """The environ for one request. ``base`` holds the per-server constants (wsgi.version, ...)."""
    environ = base.copy()
    script, path_info = split_path(scope)
    query: bytes = scope.get("query_string", b"")
    http_version = scope.get("http_version", "1.1")
    scheme = scope.get("scheme") or "http"
    environ["REQUEST_METHOD"] = scope["method"]
    environ["SCRIPT_NAME"] = script
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(http_version) or "HTTP/" + http_version
    environ["wsgi.url_scheme"] = scheme
    environ["wsgi.input"] = stream
    environ["wsgi.errors"] = errors
    raw = scope.get("raw_path")
    uri = raw.decode("latin-1") if raw else _latin1(scope["path"])
    environ["RAW_URI"] = environ["REQUEST_URI"] = uri + "?" + environ["QUERY_STRING"] if query else uri

    keys = _KEYS
    for name, value in scope["headers"]:
        key = keys.get(name)
        if key is None:
            key = header_key(name)
        if not key:
            continue
        text = value.decode("latin-1")
        old = environ.get(key)
        if old is None:
            environ[key] = text
        elif key == "HTTP_COOKIE":
            environ[key] = old + "; " + text
        elif key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):  # the first one is the one
            environ[key] = old + "," + text

    server = scope.get("server")
    if server and server[1] is not None:
        environ["SERVER_NAME"] = str(server[0])
        environ["SERVER_PORT"] = str(server[1])
    else:  # unix socket or unknown: what the client asked for, else a neutral default
        host = environ.get("HTTP_HOST", "")
        name, sep, port = host.rpartition(":")
        if not sep or not port.isdigit() or "]" in port:
            name, port = host, ""
        environ["SERVER_NAME"] = name or "localhost"
        environ["SERVER_PORT"] = port or _DEFAULT_PORTS.get(scheme, "80")
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    else:  # unix socket: CGI says REMOTE_ADDR is always there (Django reads META["REMOTE_ADDR"])
        environ["REMOTE_ADDR"] = ""
    if scheme == "https":
        environ["HTTPS"] = "on"
        tls = scope.get("extensions", {}).get("tls")
        if tls is not None:
            add_tls(environ, tls)
    return environ


def add_tls(environ: dict[str, Any], tls: dict[str, Any]) -> None:
    """The connection's TLS facts under mod_ssl's names, as WSGI apps read them."""
    from ..tls import VERSION_NAMES, cipher_name

    version = VERSION_NAMES.get(tls.get("tls_version") or 0)
    if version:
        environ["SSL_PROTOCOL"] = version
    cipher = cipher_name(tls.get("cipher_suite"))
    if cipher:
        environ["SSL_CIPHER"] = cipher
    chain = tls.get("client_cert_chain")
    if chain:
        environ["SSL_CLIENT_CERT"] = chain[0]
        environ["SSL_CLIENT_VERIFY"] = "SUCCESS"
    if tls.get("client_cert_name"):
        environ["SSL_CLIENT_S_DN"] = tls["client_cert_name"]
