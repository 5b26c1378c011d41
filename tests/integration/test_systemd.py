"""systemd's side played by the test: socket activation (LISTEN_FDS/LISTEN_PID) and sd_notify.

The harness binds the listening socket itself and hands it over as fd 3 through a tiny exec
wrapper, because LISTEN_PID must be the PID of the process that reads it and only the child
knows its own PID before exec'ing asgiserve (exec keeps the PID). It reads READY=1 / STATUS /
RELOADING=1 / STOPPING=1 datagrams on a NOTIFY_SOCKET of its own, as systemd does.
These are process-model tests: the default parser is enough (no HTTP behaviour is varied).
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from asgiserve import systemd
from tests.integration.supervised import Supervised, get, write_app

# Runs in the child: move the inherited socket to fd 3, claim it with our own PID, exec.
EXEC_WRAPPER = (
    "import os, sys; fd = int(sys.argv[1]); fd == 3 or (os.dup2(fd, 3), os.close(fd)); "
    "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


class Notifications:
    """A NOTIFY_SOCKET: a unix datagram socket bound at a path or in the abstract namespace."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        # Like systemd (NotifyAccess=main), learn each sender's PID from its credentials.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.senders: set[int] = set()
        self.env_value = "@" + address[1:] if address.startswith("\0") else address
        self.received: list[dict[str, str]] = []

    def next(self, timeout: float = 20.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        raw, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                self.senders.add(struct.unpack("3i", payload[:12])[0])
        data = raw.decode()
        message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        self.received.append(message)
        return message

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20.0) -> dict[str, str]:
        """The next datagram that sets ``key`` (to ``value``, when given)."""
        end = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, end - time.monotonic()))
            if key in message and (value is None or message[key] == value):
                return message

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Notifications]:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
    else:
        address = f"\0asgiserve-test-{uuid.uuid4().hex}"
    n = Notifications(address)
    yield n
    n.close()


def test_socket_activation_and_notify_protocol(tmp_path: Path, notify: Notifications) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    app = write_app(tmp_path)
    proc = Supervised(
        # --bind is ignored when systemd passes sockets (a copied gunicorn ExecStart keeps working).
        [app, "-w", "2", "--no-access-log", "-b", "127.0.0.1:1", "--timeout-graceful-shutdown", "5"],
        cwd=tmp_path, env={"NOTIFY_SOCKET": notify.env_value},
        prefix=[sys.executable, "-c", EXEC_WRAPPER, str(listener.fileno())], pass_fds=[listener.fileno()],
    )
    listener.close()  # the child holds it now; the port stays bound through the child's fd 3
    try:
        ready = notify.wait_for("READY")
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert ready["STATUS"] == "2 of 2 worker(s) serving"
        assert "Using 1 socket(s) passed by systemd (LISTEN_FDS)" in proc.text
        assert get(port)[0] == 200
        # The workers must not inherit the activation variables or the right to notify.
        assert proc.count(r"Listening on http://127\.0\.0\.1:1$") == 0

        proc.signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING")
        assert reloading["RELOADING"] == "1"
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert 0 < int(reloading["MONOTONIC_USEC"]) <= now_usec
        again = notify.wait_for("READY")
        assert again["READY"] == "1"
        assert get(port)[0] == 200

        proc.signal(signal.SIGTTIN)
        notify.wait_for("STATUS", "3 of 3 worker(s) serving")

        proc.signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING")
        assert stopping["STOPPING"] == "1"
        assert proc.finish() == 0
        assert notify.senders == {proc.pid}  # only the supervisor speaks for the service
    finally:
        proc.kill()
        print(f"datagrams: {notify.received}\nlog:\n{proc.text}")  # shown when the test fails


def test_activated_unix_socket_is_left_to_systemd(tmp_path: Path) -> None:
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    proc = Supervised(
        [write_app(tmp_path), "-w", "2", "--no-access-log"], cwd=tmp_path,
        prefix=[sys.executable, "-c", EXEC_WRAPPER, str(listener.fileno())], pass_fds=[listener.fileno()],
    )
    listener.close()
    try:
        proc.ready()
        assert get(str(path))[0] == 200
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0
        assert path.exists()  # systemd's socket unit owns the file, not us
    finally:
        proc.kill()


# -- the protocol pieces, without processes ---------------------------------------------------
def test_listen_fds_honours_listen_pid_and_unsets() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    assert systemd.listen_fds(env, unset=True) == [3, 4]
    assert env == {}
    assert systemd.listen_fds({"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}) == []
    assert systemd.listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "1"}) == []
    assert systemd.listen_fds({}) == []


def test_notify_address_forms() -> None:
    assert systemd.notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert systemd.notify_address({"NOTIFY_SOCKET": "@abstract"}) == "\0abstract"
    assert systemd.notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert systemd.notify_address({}) is None


def test_notify_sends_one_datagram_and_survives_a_missing_socket(tmp_path: Path) -> None:
    n = Notifications(str(tmp_path / "n.sock"))
    try:
        assert systemd.notify("READY=1", "STATUS=ok", environ={"NOTIFY_SOCKET": str(tmp_path / "n.sock")})
        assert n.next(5) == {"READY": "1", "STATUS": "ok"}
    finally:
        n.close()
    assert not systemd.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not systemd.notify("READY=1", environ={})


def test_single_process_socket_activation_notify_and_pid_file(tmp_path: Path, notify: Notifications) -> None:
    """--workers 1 (no supervisor) honours the same systemd contract and --pid; HUP is not fatal."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    pid_file = tmp_path / "app.pid"
    app = write_app(tmp_path)
    proc = Supervised(
        [app, "--no-access-log", "-b", "127.0.0.1:1", "--pid", str(pid_file)],
        cwd=tmp_path, env={"NOTIFY_SOCKET": notify.env_value},
        prefix=[sys.executable, "-c", EXEC_WRAPPER, str(listener.fileno())], pass_fds=[listener.fileno()],
    )
    listener.close()
    try:
        ready = notify.wait_for("READY")
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert ready["STATUS"] == f"Serving on http://127.0.0.1:{port}"
        assert pid_file.read_text().strip() == str(proc.pid)
        assert get(port)[0] == 200
        proc.signal(signal.SIGHUP)
        proc.wait_for("SIGHUP ignored")
        assert get(port)[0] == 200
        proc.signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING")["STOPPING"] == "1"
        assert proc.finish() == 0
        assert not pid_file.exists()
    finally:
        proc.kill()
        print(f"datagrams: {notify.received}\nlog:\n{proc.text}")


def test_supervise_runs_the_supervisor_with_one_worker(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    proc = Supervised([app, "--no-access-log", "--port", "0", "--supervise"], cwd=tmp_path)
    try:
        proc.wait_for(r"Listening on http://127\.0\.0\.1:\d+")
        proc.wait_for(r"Supervisor \d+ starting 1 worker")
        proc.wait_for(r"Worker \d+ is serving")
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0
    finally:
        proc.kill()
        print(proc.text)
