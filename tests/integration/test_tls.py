"""HTTPS served directly: real TLS clients (httpx, the websockets client, curl, openssl
s_client, raw ssl sockets) against the real server, on both parsers. trustme makes a CA, a
server certificate and a client certificate per test session."""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.test_cli_process import error_lines, run, write_app  # noqa: F401 (run: a fixture)
from tests.support import RunningServer

pytestmark = pytest.mark.timeout(60)


class Certs:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        client = self.ca.issue_cert("alice@example.com", common_name="Alice, Inc+Co")
        self.server_pem = root / "server.pem"
        server.private_key_and_cert_chain_pem.write_to_path(str(self.server_pem))
        self.server_cert = server.cert_chain_pems[0].bytes().decode()
        self.ca_pem = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.client_pem = root / "client.pem"
        client.private_key_and_cert_chain_pem.write_to_path(str(self.client_pem))
        self.client_cert = client.cert_chain_pems[0].bytes().decode()
        self.client_name = x509.load_pem_x509_certificate(self.client_cert.encode()).subject.rfc4514_string()
        key = root / "encrypted.key"

        loaded = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
        key.write_bytes(loaded.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"sesame"),
        ))
        self.encrypted_key = key
        self.cert_only = root / "cert.pem"
        server.cert_chain_pems[0].write_to_path(str(self.cert_only))

    def client_context(self, cert: bool = False, maximum: Any = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        if cert:
            context.load_cert_chain(str(self.client_pem))
        if maximum is not None:
            context.maximum_version = maximum
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


async def tls_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the scheme and the TLS extension as JSON (ws: sends it as text)."""
    facts = {"scheme": scope["scheme"], "tls": scope["extensions"].get("tls")}
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(facts)})
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(facts).encode()})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    keys = ["wsgi.url_scheme", "HTTPS", "SSL_PROTOCOL", "SSL_CIPHER", "SSL_CLIENT_CERT", "SSL_CLIENT_S_DN"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({k: environ.get(k) for k in keys}).encode()]


def tls_options(certs: Certs, **extra: Any) -> dict[str, Any]:
    return dict(ssl_certfile=str(certs.server_pem), **extra)


def get(server: RunningServer, context: ssl.SSLContext) -> Any:
    with httpx.Client(verify=context) as client:
        response = client.get(f"https://127.0.0.1:{server.port}/path")
    assert response.status_code == 200
    return response.json()


def test_https_scope_and_tls_extension(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs))
    facts = get(server, certs.client_context())
    tls = facts["tls"]
    assert facts["scheme"] == "https"
    assert tls["server_cert"] == certs.server_cert
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    assert "Listening on https://127.0.0.1:" in server.logs.text()


def test_tls_1_2_version_and_cipher_numbers(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs))
    context = certs.client_context(maximum=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    tls = get(server, context)["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] in (0xC02B, 0xC02F)  # IANA numbers of those two suites


def test_minimum_version_1_3_refuses_tls_1_2(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs, ssl_min_version="1.3"))
    with pytest.raises(httpx.ConnectError):
        get(server, certs.client_context(maximum=ssl.TLSVersion.TLSv1_2))
    assert get(server, certs.client_context())["tls"]["tls_version"] == 0x0304
    assert "Traceback" not in server.logs.text()


def test_mutual_tls_hands_the_client_certificate_to_the_app(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs, ssl_ca_certs=str(certs.ca_pem), ssl_cert_reqs="required"))
    tls = get(server, certs.client_context(cert=True))["tls"]
    assert tls["client_cert_chain"] == [certs.client_cert]
    assert tls["client_cert_name"] == certs.client_name  # RFC 4514, escapes included
    assert "\\," in tls["client_cert_name"] and "\\+" in tls["client_cert_name"]
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        get(server, certs.client_context(cert=False))  # required: no certificate, no service


def test_optional_client_certificates(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs, ssl_ca_certs=str(certs.ca_pem), ssl_cert_reqs="1"))
    assert get(server, certs.client_context())["tls"]["client_cert_chain"] == []
    assert get(server, certs.client_context(cert=True))["tls"]["client_cert_chain"] == [certs.client_cert]


def test_wsgi_gets_https_and_mod_ssl_names(serve: Any, certs: Certs) -> None:
    server = serve(wsgi_app, **tls_options(certs, ssl_ca_certs=str(certs.ca_pem), ssl_cert_reqs="optional"))
    environ = get(server, certs.client_context(cert=True))
    assert environ["wsgi.url_scheme"] == "https" and environ["HTTPS"] == "on"
    assert environ["SSL_PROTOCOL"] == "TLSv1.3" and environ["SSL_CIPHER"].startswith("TLS_")
    assert environ["SSL_CLIENT_CERT"] == certs.client_cert
    assert environ["SSL_CLIENT_S_DN"] == certs.client_name


async def test_wss_scheme_for_websockets(serve: Any, certs: Certs) -> None:
    from websockets.asyncio.client import connect

    server = serve(tls_app, **tls_options(certs))
    async with connect(f"wss://127.0.0.1:{server.port}/ws", ssl=certs.client_context()) as ws:
        facts = json.loads(await ws.recv())
    assert facts["scheme"] == "wss" and facts["tls"]["tls_version"] == 0x0304


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(deadline)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def test_plaintext_request_on_the_tls_port_is_closed(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        started = time.monotonic()
        data = read_until_closed(sock, 5)
        assert time.monotonic() - started < 4  # closed, not left hanging
        assert b"HTTP/1.1 200" not in data
    assert "Traceback" not in server.logs.text() and "ERROR" not in server.logs.text()


def test_stalled_handshake_is_dropped_after_the_deadline(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs, ssl_handshake_timeout=0.3))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        assert read_until_closed(sock, 5) == b""  # TCP open, no ClientHello ever sent
        assert time.monotonic() - started < 3
    assert get(server, certs.client_context())["scheme"] == "https"  # the server still serves
    assert not [r for r in server.logs.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_cacert(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs))
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(certs.ca_pem), f"https://127.0.0.1:{server.port}/"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scheme"] == "https"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_s_client_negotiates_alpn_http_1_1(serve: Any, certs: Certs) -> None:
    server = serve(tls_app, **tls_options(certs))
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-alpn", "h2,http/1.1",
         "-CAfile", str(certs.ca_pem), "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=20,
    )
    assert "ALPN protocol: http/1.1" in out.stdout
    assert "Verify return code: 0 (ok)" in out.stdout


def test_unix_sockets_stay_plain_beside_tls(serve: Any, certs: Certs, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    server = serve(tls_app, bind=[f"unix:{path}", "127.0.0.1:0"], **tls_options(certs))
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        assert client.get("http://localhost/").json()["scheme"] == "http"
    assert "Listening on unix:" in server.logs.text()


# -- the command line: bad certificates and flags ---------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "not-a-cert", "wrong-password", "key-missing"])
def test_bad_certificate_exits_3_with_one_line(run: Any, tmp_path: Path, certs: Certs, case: str) -> None:
    app = write_app(tmp_path, "app", "async def app(scope, receive, send): pass\n")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    args = {
        "missing": ["--ssl-certfile", str(tmp_path / "nope.pem")],
        "not-a-cert": ["--certfile", str(garbage)],
        "wrong-password": ["--ssl-certfile", str(certs.cert_only), "--ssl-keyfile", str(certs.encrypted_key),
                           "--ssl-keyfile-password", "wrong"],
        "key-missing": ["--ssl-certfile", str(certs.cert_only)],
    }[case]
    proc = run(*args, "--port", "0", f"{app}:app")
    assert proc.finish() == 3
    assert len(error_lines(proc)) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "ssl" in error_lines(proc)[0].lower()


def test_encrypted_key_with_its_password_serves(run: Any, tmp_path: Path, certs: Certs) -> None:
    app = write_app(tmp_path, "app", "async def app(scope, receive, send):\n"
                    "    if scope['type'] == 'http':\n"
                    "        await send({'type': 'http.response.start', 'status': 204})\n"
                    "        await send({'type': 'http.response.body'})\n")
    proc = run("--certfile", str(certs.cert_only), "--keyfile", str(certs.encrypted_key),
               "--ssl-keyfile-password", "sesame", "--port", "0", "--lifespan", "off", f"{app}:app")
    url = proc.wait_for("Listening on ").split("Listening on ", 1)[1].strip()
    assert url.startswith("https://")
    with httpx.Client(verify=certs.client_context()) as client:
        assert client.get(url).status_code == 204
    proc.signal(15)
    assert proc.finish() == 0


@pytest.mark.parametrize("args", [["--ssl-keyfile", "k.pem"], ["--ssl-cert-reqs", "required", "--certfile", "c.pem"]])
def test_tls_flags_that_cannot_apply_exit_2(run: Any, args: list[str]) -> None:
    proc = run(*args, "x:app")
    assert proc.finish() == 2
    assert len(error_lines(proc)) == 1


def test_workers_serve_tls_and_a_hup_rereads_the_certificate(run: Any, tmp_path: Path, certs: Certs) -> None:
    """A renewed certificate (same path) is served after HUP, without a restart."""
    app = write_app(tmp_path, "app", "async def app(scope, receive, send):\n"
                    "    if scope['type'] == 'http':\n"
                    "        await send({'type': 'http.response.start', 'status': 204})\n"
                    "        await send({'type': 'http.response.body'})\n")
    live = tmp_path / "live.pem"
    live.write_bytes(certs.server_pem.read_bytes())
    proc = run("--certfile", str(live), "--workers", "2", "--port", "0", "--lifespan", "off", f"{app}:app")
    url = proc.wait_for("Listening on ").split("Listening on ", 1)[1].strip()
    proc.wait_for("Ready: 2 worker(s)")
    port = int(url.rsplit(":", 1)[1])

    def served_cert() -> bytes:
        # A handshake caught by a worker that is stopping may be cut (asyncio does not hand
        # connections still in their handshake to the protocol, so the drain cannot see them):
        # a client retries, and so does this one.
        for attempt in range(3):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        der = tls.getpeercert(binary_form=True)
                        assert der is not None
                        return der
            except (ssl.SSLError, ConnectionError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    before = served_cert()
    renewed = certs.ca.issue_cert("127.0.0.1", "localhost")
    renewed.private_key_and_cert_chain_pem.write_to_path(str(live))
    proc.signal(1)  # SIGHUP: rolling restart
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = {served_cert() for _ in range(4)}
        if before not in seen:
            break
        time.sleep(0.2)
    assert before not in seen and len(seen) == 1
    proc.signal(15)
    assert proc.finish() == 0
