"""Listening sockets passed by systemd (socket activation), for ``web.listen: systemd``.

The protocol of sd_listen_fds(3), implemented directly (it is three environment variables):
``LISTEN_PID`` must be this process (else the variables were meant for a parent and are
ignored), ``LISTEN_FDS`` says how many file descriptors were passed, numbered from 3 on
(``SD_LISTEN_FDS_START``); ``LISTEN_FDNAMES`` may name them. The variables are removed once read,
as ``sd_listen_fds(1)`` does, so a child process does not take the sockets for its own, and
the descriptors are marked close-on-exec.

systemd creates the socket in its own network namespace (the host's), so it accepts
connections there while the service itself has a private network and may not open any
network socket: accepting on a passed socket needs neither. The page serves
:func:`passed_sockets` (each a stream socket on IPv4 or IPv6, already listening); they are
taken once per process and kept, so the page can stop and start again on them after a
reload (it serves a ``dup`` each time).
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import MutableMapping

SD_LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """No usable socket was passed; the message says why, in words for the log."""


def listen_fds(environ: MutableMapping[str, str], *, first_fd: int = SD_LISTEN_FDS_START,
               pid: int | None = None) -> list[int]:
    """The descriptors passed to process ``pid`` (default: this one) per ``environ``, which
    loses the ``LISTEN_*`` variables. Raises ActivationError when none were passed to it."""
    values = {name: environ.pop(name, None) for name in _VARIABLES}
    listen_pid, count = values["LISTEN_PID"], values["LISTEN_FDS"]
    if listen_pid is None or count is None:
        raise ActivationError("systemd passed no socket (LISTEN_FDS is not set: is "
                              "rotwatchd.socket enabled and started before the service?)")
    own = os.getpid() if pid is None else pid
    if not listen_pid.isdigit() or int(listen_pid) != own:
        raise ActivationError(f"the sockets in LISTEN_FDS are for process {listen_pid}, "
                              f"not this one ({own})")
    if not count.isdigit() or int(count) < 1:
        raise ActivationError(f"systemd passed no socket (LISTEN_FDS={count})")
    return list(range(first_fd, first_fd + int(count)))


def adopt(fd: int) -> socket.socket:
    """The socket object for passed descriptor ``fd``, close-on-exec; ActivationError (and
    ``fd`` left open) unless it is a listening TCP socket."""
    try:
        is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError as exc:
        raise ActivationError(f"passed descriptor {fd} is not open ({exc.strerror})") from None
    if not is_socket:
        raise ActivationError(f"passed descriptor {fd} is not a socket")
    sock = socket.socket(fileno=fd)
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or \
                sock.type != socket.SOCK_STREAM:
            raise ActivationError(f"passed socket {fd} is not TCP (use ListenStream=IP:PORT)")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ActivationError(f"passed socket {fd} is not listening (Accept=no expected)")
    except ActivationError:
        sock.detach()
        raise
    sock.set_inheritable(False)
    return sock


def where(sock: socket.socket) -> str:
    """``127.0.0.1:8750`` or ``[::]:8750``: the address ``sock`` is bound to."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


_lock = threading.Lock()
_taken: list[socket.socket] | None = None
_refused: str | None = None


def passed_sockets() -> list[socket.socket]:
    """The sockets systemd passed to this process, taken from the environment on the first
    call and the same on every later one. Raises ActivationError (the same each time) when
    none, or one that is not a listening TCP socket, was passed."""
    global _taken, _refused
    with _lock:
        if _taken is None and _refused is None:
            try:
                _taken = [adopt(fd) for fd in listen_fds(os.environ)]
            except ActivationError as exc:
                _refused = str(exc)
        if _refused is not None:
            raise ActivationError(_refused)
        assert _taken is not None
        return list(_taken)
