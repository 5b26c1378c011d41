"""Listening sockets from gunicorn-style specs, created before any event loop exists.

Specs: ``HOST:PORT``, ``[IPV6]:PORT``, ``HOST`` (port 8000), ``tcp://HOST:PORT``, ``unix:PATH``
and ``fd://N``. Sockets are created here (not by the loop) so that a supervisor can bind once
and hand the same sockets to every worker it forks, and so that a bind failure is one
BindError line before anything else starts.

Unix sockets: a leftover socket file from a crashed run is replaced only when nothing accepts
connections on it; ``-m/--umask`` is applied while the file is created (so ``-m 007`` yields
mode 0770, as with gunicorn). Without ``--umask`` the socket gets mode 0666 (uvicorn's choice),
so a reverse proxy running as another user can connect.
"""
from __future__ import annotations

import errno
import os
import socket
import stat
import weakref
from typing import Iterable, Optional, Union

from .config import Config
from .errors import BindError

DEFAULT_PORT = 8000
DEFAULT_UNIX_UMASK = 0o111  # 0777 & ~0111 = 0666

# Unix socket files this process created: socket -> (path, inode). cleanup() removes a file
# only if it is still the one we made (another process may have replaced it since).
_owned: "weakref.WeakKeyDictionary[socket.socket, tuple[str, int]]" = weakref.WeakKeyDictionary()

Address = Union[str, int, tuple[str, int]]


def parse_spec(spec: str) -> tuple[str, Address]:
    """``spec`` -> ("unix", path) | ("fd", n) | ("tcp", (host, port)). Raises BindError."""
    spec = spec.strip()
    if spec.startswith("unix:"):
        path = spec[5:]
        if path.startswith("//"):  # unix://path, as some tools write it
            path = path[2:]
        if not path:
            raise BindError(f"invalid bind address {spec!r}: empty unix socket path")
        return "unix", path
    if spec.startswith("fd://"):
        try:
            fd = int(spec[5:])
        except ValueError:
            raise BindError(f"invalid bind address {spec!r}: fd:// needs a number") from None
        if fd < 0:
            raise BindError(f"invalid bind address {spec!r}: negative file descriptor")
        return "fd", fd
    if spec.startswith("tcp://"):
        spec = spec[6:]
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise BindError(f"invalid bind address {spec!r}: expected [IPV6]:PORT")
        port_text = rest[1:] if rest else str(DEFAULT_PORT)
    elif spec.count(":") == 1:
        host, _, port_text = spec.partition(":")
        host = host or "0.0.0.0"  # gunicorn: ":8000" means every IPv4 interface
    elif ":" in spec:
        raise BindError(f"invalid bind address {spec!r}: write IPv6 addresses as [ADDRESS]:PORT")
    else:
        host, port_text = spec, str(DEFAULT_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise BindError(f"invalid bind address {spec!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise BindError(f"invalid bind address {spec!r}: port must be between 0 and 65535")
    if not host:
        raise BindError(f"invalid bind address {spec!r}: empty host")
    return "tcp", (host, port)


def create_sockets(config: Config) -> list[socket.socket]:
    """Bind and listen on every address of ``config.bind_specs``; all or nothing."""
    sockets: list[socket.socket] = []
    try:
        for spec in config.bind_specs:
            kind, address = parse_spec(spec)
            if kind == "unix":
                assert isinstance(address, str)
                sockets.append(_unix_socket(address, config))
            elif kind == "fd":
                assert isinstance(address, int)
                sockets.extend(sockets_from_fds([address], backlog=config.backlog))
            else:
                assert isinstance(address, tuple)
                sockets.append(_tcp_socket(address[0], address[1], config))
    except BaseException:
        cleanup(sockets)
        raise
    return sockets


def _error_text(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine"
    return exc.strerror or str(exc)


def _tcp_socket(host: str, port: int, config: Config) -> socket.socket:
    label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"could not bind to {label}: {exc.strerror}") from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise BindError("--reuse-port is not supported on this platform")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "[::]" means IPv6 only; bind 0.0.0.0 as well for IPv4 (explicit, as gunicorn does).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise BindError(f"could not bind to {label}: {_error_text(exc)}") from None
        sock.listen(config.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _unix_socket(path: str, config: Config) -> socket.socket:
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The umask decides the file's mode atomically at bind(); a chmod afterwards would
        # leave a window where the socket has the wrong permissions.
        mask = DEFAULT_UNIX_UMASK if config.umask is None else config.umask
        old = os.umask(mask)
        try:
            sock.bind(path)
        except OSError as exc:
            raise BindError(f"could not bind to unix:{path}: {_error_text(exc)}") from None
        finally:
            os.umask(old)
        _owned[sock] = (path, os.stat(path).st_ino)
        sock.listen(config.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale(path: str) -> None:
    """Remove a leftover socket file at ``path`` unless a live server still accepts on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BindError(f"could not bind to unix:{path}: {_error_text(exc)}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"could not bind to unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: a stale file from a previous run
    except OSError as exc:
        raise BindError(f"could not bind to unix:{path}: {_error_text(exc)}") from None
    else:
        raise BindError(f"could not bind to unix:{path}: address already in use")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BindError(f"could not remove stale socket unix:{path}: {_error_text(exc)}") from None


def sockets_from_fds(fds: Iterable[int], backlog: Optional[int] = None) -> list[socket.socket]:
    """Wrap already-open listening sockets (``fd://N``, systemd's LISTEN_FDS) without rebinding.

    The files behind them belong to whoever opened them, so cleanup() never unlinks them.
    """
    sockets = []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise BindError(f"could not use fd://{fd}: {_error_text(exc)}") from None
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise BindError(f"could not use fd://{fd}: not a stream socket")
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:  # not every platform reports it; assume the owner made it listen
            listening = 1
        if not listening:
            sock.listen(backlog or 2048)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def describe(sock: socket.socket, tls: bool = False) -> str:
    """A human (and test) readable address: http://127.0.0.1:8000, https://[::1]:8000, unix:/path."""
    scheme = "https" if tls else "http"
    try:
        name = sock.getsockname()
    except OSError:
        return "a closed socket"
    if sock.family == socket.AF_INET:
        return f"{scheme}://{name[0]}:{name[1]}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{name[0]}]:{name[1]}"
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return f"unix:{name}" if name else "unix:(unnamed)"
    return repr(name)


def cleanup(sockets: Iterable[socket.socket]) -> None:
    """Close sockets; remove the unix socket files this process created (if still ours)."""
    for sock in sockets:
        owned = _owned.pop(sock, None)
        try:
            sock.close()
        except OSError:  # closing is best effort; nothing useful to report
            pass
        if owned is not None:
            path, inode = owned
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:  # already gone or replaced: not ours to remove
                pass
