"""TLS: the server's SSL context, built from Config, and the ASGI TLS extension per connection.

The context is built in each serving process, before it drops privileges (a worker forked
after HUP reads the files again, so a renewed certificate needs no restart); the supervisor
builds one first only to fail fast, with one line, on a bad certificate, key or password.

The ``tls`` scope extension follows asgiref's specs/tls.rst: ``server_cert`` (PEM),
``client_cert_chain`` (PEM strings, leaf first: the verified chain on Python 3.13+, the leaf
before), ``client_cert_name`` (RFC 4514), ``client_cert_error``, ``tls_version`` and
``cipher_suite`` (IANA numbers). It is computed once per connection, on its first request.
"""
from __future__ import annotations

import re
import ssl
from typing import TYPE_CHECKING, Any, Optional

from .errors import AsgiserveError

if TYPE_CHECKING:
    from .config import Config

CERT_REQS = {
    "none": ssl.CERT_NONE, "0": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL, "1": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED, "2": ssl.CERT_REQUIRED,
}
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
VERSION_NUMBERS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
VERSION_NAMES = {number: name for name, number in VERSION_NUMBERS.items()}
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)
# RFC 4514 short names; any other attribute is written with the name OpenSSL gives it.
_SHORT = {
    "commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST", "organizationName": "O",
    "organizationalUnitName": "OU", "countryName": "C", "streetAddress": "STREET", "domainComponent": "DC",
    "userId": "UID",
}


class TLSError(AsgiserveError):
    """The certificate, key, password or CA file cannot be used (exit 3)."""


def create_context(config: "Config") -> Optional[ssl.SSLContext]:
    """The server context for ``config``, or None without --ssl-certfile. Raises TLSError."""
    if config.ssl_certfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[config.ssl_min_version]
    try:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load --ssl-certfile/--ssl-keyfile: {_describe(exc)}") from None
    context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_ca_certs is not None:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load --ssl-ca-certs {config.ssl_ca_certs}: {_describe(exc)}") from None
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TLSError(f"--ssl-ciphers {config.ssl_ciphers!r} selects no cipher OpenSSL knows") from None
    # With --http2, h2 first: a client offering both gets HTTP/2 (RFC 7301: the server's choice).
    context.set_alpn_protocols(["h2", "http/1.1"] if config.http2 else ["http/1.1"])
    return context


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({exc.library})" if exc.library else str(exc.reason)
    return str(exc) or type(exc).__name__


def load(config: "Config") -> Optional["ServerTLS"]:
    """The context and the server certificate, or None without --ssl-certfile. Raises TLSError."""
    context = create_context(config)
    if context is None:
        return None
    assert config.ssl_certfile is not None
    with open(config.ssl_certfile, encoding="ascii", errors="replace") as file:  # readable: loaded above
        match = _PEM.search(file.read())
    return ServerTLS(context, match.group(0) if match else None)


class ServerTLS:
    """One process's TLS setup: the context, and what every connection's extension shares."""

    def __init__(self, context: ssl.SSLContext, server_cert: Optional[str]) -> None:
        self.context = context
        self.server_cert = server_cert

    def extension(self, ssl_object: Any) -> dict[str, Any]:
        chain: list[str] = []
        name: Optional[str] = None
        verified = getattr(ssl_object, "get_verified_chain", None)  # Python 3.13+
        if verified is not None:
            chain = [ssl.DER_cert_to_PEM_cert(bytes(cert)) for cert in verified() or ()]  # DER bytes
        if not chain:
            leaf = ssl_object.getpeercert(binary_form=True)
            if leaf:
                chain = [ssl.DER_cert_to_PEM_cert(leaf)]
        if chain:
            name = rfc4514(ssl_object.getpeercert().get("subject", ()))
        cipher = ssl_object.cipher()
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            # A certificate that fails verification fails the handshake (optional or required),
            # so a connection that got this far has no certificate error to report.
            "client_cert_error": None,
            "tls_version": VERSION_NUMBERS.get(ssl_object.version() or ""),
            "cipher_suite": cipher_numbers().get(cipher[0]) if cipher else None,
        }


def rfc4514(subject: Any) -> Optional[str]:
    """A distinguished name in RFC 4514's form (last RDN first) from getpeercert()'s 'subject'."""
    if not subject:
        return None
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(f"{_SHORT.get(key, key)}={_escape(value)}" for key, value in rdn))
    return ",".join(rdns)


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


_CIPHERS: dict[str, int] = {}


def cipher_numbers() -> dict[str, int]:
    """OpenSSL cipher name -> IANA number, for every cipher this OpenSSL knows."""
    if not _CIPHERS:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
        _CIPHERS.update((c["name"], c["id"] & 0xFFFF) for c in context.get_ciphers())
    return _CIPHERS


def cipher_name(number: Optional[int]) -> Optional[str]:
    """The OpenSSL name of an IANA cipher number (for WSGI's SSL_CIPHER)."""
    for name, known in cipher_numbers().items():
        if known == number:
            return name
    return None
