"""Try what the rotwatchd unit forbids and what it must allow, from whatever runs this script.

systemd/boot_checks.py runs it twice inside the booted test container: as a copy of
rotwatchd.service (the same sandbox, drop-ins included) and as the rotwatchd user with no
sandbox at all. The second run is the control: what the unit forbids must work there, so a
refusal under the unit comes from the unit and not from file modes or a missing feature.

    python3 sandbox_probe.py PORT GOVERNOR_FILE OUTSIDE_DIR

Prints one JSON object: check name -> "ok" or the errno name of the refusal (for example
"EROFS"). Standard library only; exits 0 unless the probe itself breaks.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys
from collections.abc import Callable

#: Folders the unit makes writable (ReadWritePaths=, StateDirectory=).
WRITABLE = ("/srv/rotwatchd/inbox", "/srv/rotwatchd/outbox", "/srv/rotwatchd/review",
            "/var/lib/rotwatchd")
CLONE_NEWUSER = 0x10000000

libc = ctypes.CDLL(None, use_errno=True)


def attempt(action: Callable[[], None]) -> str:
    try:
        action()
    except TimeoutError:
        return "timeout"  # a dropped packet: no errno, only silence
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


def create_file_in(folder: str) -> Callable[[], None]:
    def action() -> None:
        path = os.path.join(folder, f".sandbox-probe-{os.getpid()}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(path)
    return action


def rewrite(path: str) -> Callable[[], None]:
    """Write a sysfs-style attribute back with the value it holds (changes nothing)."""
    def action() -> None:
        with open(path) as handle:
            value = handle.read().strip()
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    return action


def connect(port: int) -> Callable[[], None]:
    def action() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            pass
    return action


def open_socket(family: int, kind: int) -> Callable[[], None]:
    def action() -> None:
        socket.socket(family, kind).close()
    return action


def list_home() -> None:
    os.listdir("/home")


def setfsuid() -> None:
    """setfsuid(own uid) never fails for an unprivileged caller; only a seccomp filter
    (SystemCallFilter=~@privileged) refuses it."""
    if libc.setfsuid(os.getuid()) == -1:
        raise OSError(ctypes.get_errno(), "setfsuid")


def unshare_user() -> None:
    """A new user namespace, in a child so that this process stays where it is."""
    pid = os.fork()
    if pid == 0:
        result = libc.unshare(CLONE_NEWUSER)
        os._exit(0 if result == 0 else ctypes.get_errno())
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        raise OSError(code, "unshare(CLONE_NEWUSER)")


def main(argv: list[str]) -> int:
    port, governor, outside = int(argv[1]), argv[2], argv[3]
    checks: dict[str, Callable[[], None]] = {
        **{f"write {folder}": create_file_in(folder) for folder in WRITABLE},
        f"write {outside}": create_file_in(outside),
        f"write {governor}": rewrite(governor),
        "list /home": list_home,
        "connect 127.0.0.1": connect(port),
        "socket AF_INET6": open_socket(socket.AF_INET6, socket.SOCK_STREAM),
        "socket AF_NETLINK": open_socket(socket.AF_NETLINK, socket.SOCK_RAW),
        "syscall setfsuid": setfsuid,
        "syscall unshare(CLONE_NEWUSER)": unshare_user,
    }
    print(json.dumps({name: attempt(action) for name, action in checks.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
