"""Real sockets: TCP on 127.0.0.1 / ::1, unix sockets in tmp_path, inherited file descriptors."""
from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest

from asgiserve import bind
from asgiserve.config import Config
from asgiserve.errors import BindError


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback on this machine")


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    bind.cleanup(sockets)


def create(opened: list[socket.socket], **options: Any) -> list[socket.socket]:
    sockets = bind.create_sockets(Config(**options))
    opened.extend(sockets)
    return sockets


def is_listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


# -- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("127.0.0.1:8000", ("tcp", ("127.0.0.1", 8000))),
        ("localhost:0", ("tcp", ("localhost", 0))),
        ("tcp://10.0.0.1:80", ("tcp", ("10.0.0.1", 80))),
        ("[::1]:9000", ("tcp", ("::1", 9000))),
        ("[::]", ("tcp", ("::", 8000))),
        (":8080", ("tcp", ("0.0.0.0", 8080))),
        ("example.org", ("tcp", ("example.org", 8000))),
        ("unix:/run/app.sock", ("unix", "/run/app.sock")),
        ("unix:relative.sock", ("unix", "relative.sock")),
        ("unix:///abs.sock", ("unix", "/abs.sock")),
        ("fd://3", ("fd", 3)),
    ],
)
def test_parse_spec(spec: str, parsed: Any) -> None:
    assert bind.parse_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec, message",
    [
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:70000", "between 0 and 65535"),
        ("::1:8000", "[ADDRESS]:PORT"),
        ("[::1", "[IPV6]:PORT"),
        ("unix:", "empty unix socket path"),
        ("fd://x", "needs a number"),
        ("fd://-1", "negative"),
    ],
)
def test_parse_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(BindError, match=message.replace("[", r"\[").replace("]", r"\]")):
        bind.parse_spec(spec)


# -- TCP ----------------------------------------------------------------------------------
def test_tcp_on_port_zero(opened: list[socket.socket]) -> None:
    (sock,) = create(opened, bind=("127.0.0.1:0",))
    host, port = sock.getsockname()
    assert host == "127.0.0.1" and port > 0
    assert is_listening(sock) and not sock.getblocking()
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert bind.describe(sock) == f"http://127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the kernel accepts into the backlog: it really listens


def test_host_and_port_options(opened: list[socket.socket]) -> None:
    (sock,) = create(opened, host="127.0.0.1", port=0)
    assert sock.getsockname()[0] == "127.0.0.1"


@needs_ipv6
def test_ipv6_is_v6only(opened: list[socket.socket]) -> None:
    (sock,) = create(opened, bind=("[::1]:0",))
    assert sock.family == socket.AF_INET6
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    port = sock.getsockname()[1]
    assert bind.describe(sock) == f"http://[::1]:{port}"


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port(opened: list[socket.socket]) -> None:
    (sock,) = create(opened, bind=("127.0.0.1:0",), reuse_port=True)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    (plain,) = create(opened, bind=("127.0.0.1:0",))
    assert not plain.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)


def test_port_in_use_is_one_clear_line(opened: list[socket.socket]) -> None:
    (busy,) = create(opened, bind=("127.0.0.1:0",))
    port = busy.getsockname()[1]
    with pytest.raises(BindError) as info:
        create(opened, bind=(f"127.0.0.1:{port}",))
    assert str(info.value) == f"could not bind to 127.0.0.1:{port}: address already in use"


def test_several_addresses_and_all_or_nothing(opened: list[socket.socket], tmp_path: Path) -> None:
    (busy,) = create(opened, bind=("127.0.0.1:0",))
    port = busy.getsockname()[1]
    path = tmp_path / "first.sock"
    with pytest.raises(BindError):
        create(opened, bind=(f"unix:{path}", "127.0.0.1:0", f"127.0.0.1:{port}"))
    assert not path.exists()  # the unix socket created first was cleaned up
    socks = create(opened, bind=(f"unix:{path}", "127.0.0.1:0"))
    assert [s.family for s in socks] == [socket.AF_UNIX, socket.AF_INET]


def test_unresolvable_host(opened: list[socket.socket]) -> None:
    with pytest.raises(BindError, match="could not bind to no-such-host.invalid:0"):
        create(opened, bind=("no-such-host.invalid:0",))


# -- unix sockets -------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o007, 0o770), (0o077, 0o700), (0o000, 0o777), (None, 0o666)])
def test_unix_socket_mode_follows_umask(
    opened: list[socket.socket], tmp_path: Path, umask: Any, expected: int
) -> None:
    path = tmp_path / "app.sock"
    before = os.umask(0o022)
    try:
        (sock,) = create(opened, bind=(f"unix:{path}",), umask=umask)
        assert os.umask(0o022) == 0o022  # the process umask was restored
    finally:
        os.umask(before)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert mode(path) == expected
    assert is_listening(sock)
    assert bind.describe(sock) == f"unix:{path}"


def test_uds_option(opened: list[socket.socket], tmp_path: Path) -> None:
    (sock,) = create(opened, uds=str(tmp_path / "u.sock"))
    assert sock.family == socket.AF_UNIX


def test_stale_socket_file_is_replaced(opened: list[socket.socket], tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()  # the file stays behind, as after a crash
    assert path.exists()
    (sock,) = create(opened, bind=(f"unix:{path}",))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    client.close()


def test_live_socket_is_not_stolen(opened: list[socket.socket], tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        live.bind(str(path))
        live.listen(1)
        inode = os.stat(path).st_ino
        with pytest.raises(BindError) as info:
            create(opened, bind=(f"unix:{path}",))
        assert str(info.value) == f"could not bind to unix:{path}: address already in use"
        assert os.stat(path).st_ino == inode  # still the other server's socket
    finally:
        live.close()


def test_regular_file_is_never_removed(opened: list[socket.socket], tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(BindError, match="exists and is not a socket"):
        create(opened, bind=(f"unix:{path}",))
    assert path.read_text() == "precious"


def test_missing_directory(opened: list[socket.socket], tmp_path: Path) -> None:
    with pytest.raises(BindError, match="could not bind to unix:"):
        create(opened, bind=(f"unix:{tmp_path}/missing/dir/app.sock",))


def test_cleanup_removes_our_socket_file_only(tmp_path: Path) -> None:
    path = tmp_path / "ours.sock"
    sockets = bind.create_sockets(Config(bind=(f"unix:{path}",)))
    bind.cleanup(sockets)
    assert not path.exists()
    assert sockets[0].fileno() == -1

    sockets = bind.create_sockets(Config(bind=(f"unix:{path}",)))
    os.unlink(path)  # someone else took the path over meanwhile
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    try:
        bind.cleanup(sockets)
        assert path.exists()
    finally:
        other.close()


# -- inherited sockets --------------------------------------------------------------------
def test_fd_spec_uses_an_open_listening_socket(opened: list[socket.socket]) -> None:
    parent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    parent.bind(("127.0.0.1", 0))
    parent.listen(5)
    port = parent.getsockname()[1]
    fd = os.dup(parent.fileno())
    parent.close()
    (sock,) = create(opened, bind=(f"fd://{fd}",))
    assert sock.fileno() == fd and sock.family == socket.AF_INET
    assert bind.describe(sock) == f"http://127.0.0.1:{port}"
    assert not sock.getblocking()


def test_fds_that_are_not_listening_yet_get_listen(opened: list[socket.socket], tmp_path: Path) -> None:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.bind(str(tmp_path / "inherited.sock"))
    (sock,) = bind.sockets_from_fds([raw.detach()])
    opened.append(sock)
    assert is_listening(sock)
    bind.cleanup([sock])
    assert (tmp_path / "inherited.sock").exists()  # not ours to remove


def test_fd_must_be_a_stream_socket() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(BindError, match="not a stream socket"):
            bind.sockets_from_fds([udp.fileno()])
    finally:
        udp.close()


def test_bad_fd() -> None:
    with pytest.raises(BindError, match="could not use fd://999999"):
        bind.sockets_from_fds([999999])  # far above any open descriptor
