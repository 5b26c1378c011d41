"""A real nginx in front of asgiserve on a unix socket, as deployed (examples/deploy/nginx.conf).

nginx runs unprivileged-style from a config in tmp_path (``-p tmp -c nginx.conf``, ``daemon off``,
pid/logs/temp paths in tmp, listening on 127.0.0.1). The site block is the example file itself
with only its listen address and socket path rewritten, so the documented setup is what is
tested. Skipped (with the reason) only when nginx is not installed: ``apt-get install -y nginx``.
Runs on both parsers: this is HTTP through a real proxy.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.integration.supervised import Load, Supervised, get, write_app

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install -y nginx)")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deploy" / "nginx.conf"
EXAMPLE_SOCKET = "/home/sammy/myproject/myproject.sock"

MAIN_CONF = """
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
"""

# The seed's project layout: the app in its module, a wsgi.py entry point beside it.
FLASK_PROJECT = '''
import os
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def index():
    return f"hello from {os.getpid()}"


@app.route("/whoami")
def whoami():
    return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, url=request.url)
'''
WSGI_ENTRY = "from myproject import app\n\nif __name__ == '__main__':\n    app.run()\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_cert(tmp: Path) -> Optional[tuple[Path, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class Nginx:
    def __init__(self, tmp: Path, sock_path: Path, user: Optional[str] = None, keepalive: bool = False) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.tls_port: Optional[int] = None
        listen = f"listen 127.0.0.1:{self.port};"
        cert = make_cert(tmp)
        if cert is not None:
            self.tls_port = free_port()
            listen += (f"\n    listen 127.0.0.1:{self.tls_port} ssl;"
                       f"\n    ssl_certificate {cert[0]};\n    ssl_certificate_key {cert[1]};")
        site = EXAMPLE.read_text()
        assert "listen 80;" in site and EXAMPLE_SOCKET in site, "example changed: update this test"
        site = site.replace("listen 80;", listen).replace(EXAMPLE_SOCKET, str(sock_path))
        if keepalive:
            site = upstream_keepalive(site, sock_path)
        (tmp / "site.conf").write_text(site)
        # As root, nginx would switch its workers to "nobody", who may not open a 0770 socket
        # owned by root; an unprivileged user runs nginx as itself and must omit the directive.
        if user is None:
            user = "user root root;" if os.geteuid() == 0 else ""
        (tmp / "nginx.conf").write_text(MAIN_CONF.format(tmp=tmp, user=user))
        self.popen = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        """nginx signals readiness only by accepting connections: probe until it does (bounded)."""
        end = time.monotonic() + 20
        while True:
            if self.popen.poll() is not None:
                err = self.popen.stderr.read().decode() if self.popen.stderr else ""
                raise AssertionError(f"nginx exited: {err}\n{(self.tmp / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except ConnectionRefusedError:
                if time.monotonic() > end:
                    raise AssertionError("nginx did not start listening") from None
                time.sleep(0.02)  # between probes only; readiness is the accepted connection

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGQUIT)  # nginx's graceful shutdown
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self.popen.stderr is not None:
            self.popen.stderr.close()


def upstream_keepalive(site: str, sock_path: Path) -> str:
    """The variant the example's comment describes: an upstream{} with keepalive, HTTP/1.1 to it."""
    direct = f"proxy_pass http://unix:{sock_path};"
    assert direct in site, "example changed: update this test"
    site = site.replace(direct, 'proxy_pass http://app;\n        proxy_http_version 1.1;\n'
                                '        proxy_set_header Connection "";')
    return f"upstream app {{\n    server unix:{sock_path};\n    keepalive 16;\n}}\n" + site


def unix_peers(sock_path: Path) -> int:
    """Connected sockets on the server side of ``sock_path`` (ss lists them by their local path)."""
    out = subprocess.run(["ss", "-x", "-H", "state", "connected"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if f" {sock_path} " in f" {line} ")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[object]:
    started: list[object] = []

    def _start(args: list[str], cwd: Path, sock_path: Path, keepalive: bool = False) -> tuple[Supervised, Nginx]:
        app = Supervised(args, cwd=cwd)
        started.append(app)
        app.ready()
        nginx = Nginx(tmp_path, sock_path, keepalive=keepalive)
        started.append(nginx)
        return app, nginx

    yield _start
    for thing in reversed(started):
        if isinstance(thing, Nginx):
            thing.stop()
        else:
            thing.kill()  # type: ignore[attr-defined]


def https_get(port: int, path: str) -> tuple[int, bytes]:
    import httpx

    with httpx.Client(verify=False, timeout=10) as client:
        response = client.get(f"https://127.0.0.1:{port}{path}")
        return response.status_code, response.content


def test_nginx_proxies_to_workers_on_a_unix_socket_with_client_address(stack, tmp_path: Path, http_impl: str) -> None:
    sock_path = tmp_path / "app.sock"
    app, nginx = stack([write_app(tmp_path), "-w", "2", "-b", f"unix:{sock_path}", "-m", "007", "--http", http_impl,
                        "--no-access-log"], tmp_path, sock_path)
    assert (sock_path.stat().st_mode & 0o777) == 0o770
    for _ in range(10):
        status, _, body = get(nginx.port, "/")
        assert status == 200 and body.startswith(b"v1 ")
    status, _, body = get(nginx.port, "/whoami")
    seen = json.loads(body)
    # Direct peers on a unix socket have no address; this one came from nginx's X-Forwarded-For.
    assert seen["client"][0] == "127.0.0.1"
    assert seen["scheme"] == "http"
    assert seen["server"] == [str(sock_path), None]
    if nginx.tls_port is not None:
        status, body = https_get(nginx.tls_port, "/whoami")
        assert status == 200
        assert json.loads(body)["scheme"] == "https"  # from X-Forwarded-Proto
        assert json.loads(body)["client"][0] == "127.0.0.1"


def test_without_proxy_headers_the_app_sees_the_raw_unix_peer(stack, tmp_path: Path) -> None:
    # The control for the test above: the same stack with --no-proxy-headers.
    sock_path = tmp_path / "app.sock"
    app, nginx = stack([write_app(tmp_path), "-w", "2", "-b", f"unix:{sock_path}", "-m", "007",
                        "--no-proxy-headers", "--no-access-log"], tmp_path, sock_path)
    seen = json.loads(get(nginx.port, "/whoami")[2])
    assert seen["client"] is None and seen["scheme"] == "http"
    if nginx.tls_port is not None:
        assert json.loads(https_get(nginx.tls_port, "/whoami")[1])["scheme"] == "http"


def test_the_seed_walkthrough_flask_wsgi_entry_point(stack, tmp_path: Path, http_impl: str) -> None:
    """`asgiserve --workers 3 --bind unix:app.sock -m 007 wsgi:app`, word for word, behind nginx."""
    project = tmp_path / "myproject"
    project.mkdir()
    (project / "myproject.py").write_text(FLASK_PROJECT)
    (project / "wsgi.py").write_text(WSGI_ENTRY)
    sock_path = project / "app.sock"
    app, nginx = stack(["--workers", "3", "--bind", "unix:app.sock", "-m", "007", "wsgi:app", "--http", http_impl],
                       project, sock_path)
    assert len(app.ready()) == 3
    status, _, body = get(nginx.port, "/")
    assert status == 200 and body.startswith(b"hello from ")
    seen = json.loads(get(nginx.port, "/whoami")[2])
    assert seen["remote_addr"] == "127.0.0.1" and seen["scheme"] == "http"
    if nginx.tls_port is not None:
        seen = json.loads(https_get(nginx.tls_port, "/whoami")[1])
        assert seen["scheme"] == "https" and seen["url"].startswith("https://")
    app.signal(signal.SIGTERM)
    assert app.finish() == 0
    assert not sock_path.exists()


def reload_under_load(stack, tmp_path: Path, keepalive: bool) -> Load:
    """Two workers behind nginx; a HUP while nginx forwards continuous traffic, until the old
    workers have exited and 100 more requests went through."""
    sock_path = tmp_path / "app.sock"
    app, nginx = stack([write_app(tmp_path), "-w", "2", "-b", f"unix:{sock_path}", "-m", "007", "--no-access-log"],
                       tmp_path, sock_path, keepalive=keepalive)
    if keepalive:
        for _ in range(20):
            assert get(nginx.port, "/")[0] == 200
        assert unix_peers(sock_path) >= 1, "nginx kept no upstream connection open: keepalive is not in effect"
    with Load(nginx.port, threads=4) as load:
        load.wait_responses(100)
        mark = app.mark()
        app.signal(signal.SIGHUP)
        app.ready(mark, what="Reload complete")
        app.wait_for(r"Worker \d+ exited with code 0\.", mark, count=2)
        load.wait_responses(100)
    return load


def test_reload_behind_nginx_drops_nothing(stack, tmp_path: Path) -> None:
    # Process-model test (one parser): a 502 from nginx would mean a worker refused or reset a
    # connection.
    load = reload_under_load(stack, tmp_path, keepalive=False)
    print(f"HUP behind nginx: {load.summary()}")
    assert load.failed == [], load.summary()


def test_reload_behind_nginx_with_upstream_keepalive_drops_nothing(stack, tmp_path: Path) -> None:
    # As above, but nginx keeps idle connections to the workers and reuses them, so a reload
    # closes connections nginx may be about to send on. A worker closes an idle one cleanly
    # (FIN, not RST), and nginx retries a request that fails on a reused connection.
    load = reload_under_load(stack, tmp_path, keepalive=True)
    retried = (tmp_path / "error.log").read_text().count("while reading response header from upstream")
    print(f"HUP behind nginx with upstream keepalive: {load.summary()}; nginx retried {retried}")
    assert load.failed == [], load.summary()


def _www_data_setup() -> Optional[str]:
    """Why the seed's permission model can't be reproduced here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (to run the app as nobody and nginx's workers as www-data)"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    try:
        import grp
        import pwd

        grp.getgrnam("www-data"), pwd.getpwnam("nobody")
    except KeyError:
        return "no www-data group or no nobody user"
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=www-data", "--clear-groups", sys.executable,
                            "-c", "import asgiserve"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        return "this checkout's Python/asgiserve is not readable by an ordinary user"
    return None


@pytest.mark.parametrize("nginx_user, allowed", [("www-data", True), ("daemon", False)])
def test_the_seed_permission_model_nginx_as_www_data(tmp_path: Path, nginx_user: str, allowed: bool,
                                                     http_impl: str) -> None:
    """The seed's setup: systemd runs the app as an ordinary user in group www-data (User=sammy,
    Group=www-data) with `-m 007`, nginx's workers run as www-data. The socket is 0770, owned by
    that user and group: nginx connects through the group, and any other user (here nginx run as
    daemon) is refused, so nginx answers 502."""
    reason = _www_data_setup()
    if reason is not None:
        pytest.skip(reason)
    import grp
    import pwd
    import tempfile

    nobody, www = pwd.getpwnam("nobody"), grp.getgrnam("www-data")
    home = Path(tempfile.mkdtemp(prefix="asgiserve-seed-"))  # tmp_path is 0700 root: not for nobody
    try:
        home.chmod(0o755)
        project = home / "myproject"
        project.mkdir()
        (project / "myproject.py").write_text(FLASK_PROJECT)
        (project / "wsgi.py").write_text(WSGI_ENTRY)
        for path in (project, project / "myproject.py", project / "wsgi.py"):
            os.chown(path, nobody.pw_uid, www.gr_gid)
        project.chmod(0o751)  # others may only pass through: the socket's own mode decides
        sock_path = project / "myproject.sock"
        args = ["--workers", "2", "--bind", "unix:myproject.sock", "-m", "007", "wsgi:app", "--no-access-log",
                "--http", http_impl]
        app = Supervised(args, cwd=project, prefix=["setpriv", "--reuid=nobody", "--regid=www-data", "--clear-groups"])
        nginx: Optional[Nginx] = None
        try:
            app.ready()
            st = sock_path.stat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, www.gr_gid, 0o770)
            nginx = Nginx(tmp_path, sock_path, user=f"user {nginx_user} {nginx_user};")
            status, _, body = get(nginx.port, "/")
            if allowed:
                assert status == 200 and body.startswith(b"hello from ")
            else:
                assert status == 502  # connect() to unix:... failed (13: Permission denied)
                assert "Permission denied" in (tmp_path / "error.log").read_text()
        finally:
            if nginx is not None:
                nginx.stop()
            app.kill()
    finally:
        shutil.rmtree(home, ignore_errors=True)
