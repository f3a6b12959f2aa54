"""``rotwatchd run`` as systemd would start it: a subprocess with NOTIFY_SOCKET pointing at a
datagram socket this helper owns, so the tests see exactly what systemd would receive."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def rotwatchd_command() -> list[str]:
    script = Path(sys.executable).parent / "rotwatchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotwatchd"]


def unprivileged_prefix() -> list[str]:
    """Command prefix that makes the daemon unable to override file permissions, as the
    service user is. Run as root, the suite keeps uid 0 (the interpreter may live under a
    0700 /root) but drops CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from the bounding set, so a
    0444 file is refused to it exactly as to the rotwatchd user. Needs setpriv (util-linux)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("setpriv (util-linux) is needed to drop privileges as root")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


class NotifySocket:
    """An abstract AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self) -> None:
        self.name = f"rotwatchd-test-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.messages: list[list[str]] = []  # every datagram, split into assignments

    @property
    def env_value(self) -> str:
        return "@" + self.name

    def expect(self, predicate: Callable[[list[str]], bool], timeout: float,
               alive: Callable[[], None] = lambda: None) -> list[str]:
        """Receive until a datagram matches *predicate*; return it. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching sd_notify message in {timeout}s; "
                                     f"got {self.messages[-10:]}")
            self.sock.settimeout(min(remaining, 0.5))
            try:
                message = self.sock.recv(65536).decode().split("\n")
            except TimeoutError:
                alive()
                continue
            self.messages.append(message)
            if predicate(message):
                return message

    def close(self) -> None:
        self.sock.close()


#: What systemd does between fork and exec for socket activation (sd_listen_fds(3)): the socket
#: at descriptor 3, LISTEN_FDS=1 and LISTEN_PID set to the process that will run the daemon
#: (exec keeps the PID); a LISTEN_PID already in the environment is kept, to test a wrong one.
_SOCKET_ACTIVATION = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ.setdefault("LISTEN_PID", str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""


class ServiceProcess:
    """The daemon under test; stderr goes to a log file the test can read. With ``listening``
    it gets that socket as systemd passes one (socket activation); ``env`` adds variables."""

    def __init__(self, config: Path, log: Path, notify: NotifySocket | None,
                 watchdog_usec: int | None = None, *, unprivileged: bool = False,
                 listening: socket.socket | None = None,
                 env: dict[str, str] | None = None) -> None:
        extra, env = env or {}, dict(os.environ)
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                     "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(name, None)
        env.update(extra)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify.env_value
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.log = log
        self._handle = open(log, "ab")  # noqa: SIM115 - closed in stop()
        prefix = unprivileged_prefix() if unprivileged else []
        command = [*rotwatchd_command(), "run", "-c", str(config)]
        passed: tuple[int, ...] = ()
        if listening is not None:
            passed = (listening.fileno(),)
            command = [sys.executable, "-c", _SOCKET_ACTIVATION, str(passed[0]), *command]
        self.proc = subprocess.Popen([*prefix, *command], stderr=self._handle,
                                     stdout=subprocess.DEVNULL, cwd=config.parent, env=env,
                                     pass_fds=passed)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.text()}")

    def send(self, sig: int) -> None:
        self.check_alive()
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._handle.close()
