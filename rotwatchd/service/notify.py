"""sd_notify without a dependency: tell systemd we are ready, alive, reloading or stopping.

The protocol (``man sd_notify``): newline-separated ``KEY=VALUE`` assignments sent as one
datagram to the AF_UNIX socket named in ``$NOTIFY_SOCKET``; a leading ``@`` means an abstract
socket. With ``Type=notify`` systemd waits for ``READY=1``; with ``WatchdogSec=`` it sets
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) and kills the service if ``WATCHDOG=1`` stops
arriving. ``RELOADING=1`` must carry ``MONOTONIC_USEC=`` (CLOCK_MONOTONIC, µs) for systemd >= 253
to match it with the following ``READY=1``.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a cheap no-op. A send that fails is
logged once; the daemon never stops because its supervisor cannot be told something.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | None:
    """Translate ``$NOTIFY_SOCKET`` into a Python AF_UNIX address; None if unsupported.

    ``/run/systemd/notify`` stays a path; ``@name`` becomes the abstract ``\\0name``. Other
    schemes (``vsock:``, used inside VMs) are not supported and return None.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), or None.

    None when the watchdog is off, the value is not a positive integer, or ``$WATCHDOG_PID``
    names another process (the variable was inherited, not meant for us).
    """
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid is not None and raw_pid.strip() != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd expects in ``MONOTONIC_USEC=``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotifier:
    """Sends sd_notify messages. Thread-safe; a no-op when not run by systemd.

    *env* defaults to ``os.environ`` (tests pass their own mapping).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = socket_address(raw) if raw else None
        self.watchdog_interval = watchdog_interval(env, os.getpid())
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._logged_errors: set[int | None] = set()
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a supported address; not notifying systemd", raw)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments as one datagram. Returns True if it was sent."""
        if self._address is None:
            return False
        payload = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        with self._lock:
            try:
                if self._sock is None:
                    # Non-blocking: a datagram socket whose reader stalls fills up after a few
                    # messages, and a worker must never hang on its supervisor. A dropped
                    # message is logged; the next ping or STATUS= goes out as usual.
                    self._sock = socket.socket(
                        socket.AF_UNIX,
                        socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                    )
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                if exc.errno not in self._logged_errors:  # once per kind of failure
                    self._logged_errors.add(exc.errno)
                    log.warning("cannot notify systemd at %r: %s", self._address, exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (startup or reload finished), optionally with a STATUS= line."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC=, before re-reading the configuration."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> bool:
        """STOPPING=1 when shutdown begins."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """STATUS=<text>: the one-line state `systemctl status` shows."""
        return self.send(f"STATUS={text}")

    def watchdog(self, status: str | None = None) -> bool:
        """WATCHDOG=1 keep-alive, optionally with a STATUS= line."""
        return self.send("WATCHDOG=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        """Close the socket (a later send reopens it)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Heartbeat:
    """WATCHDOG=1 that proves every registered loop is still turning.

    Each worker loop registers once and calls :meth:`beat` on every turn, waiting at most
    :meth:`timeout` for work so that it turns even while the daemon sleeps. The ping is sent
    when at least ``interval`` has passed since the previous one *and* every registered loop
    has beaten since then: one stuck worker is enough for systemd's watchdog to fire.
    ``status`` (optional) supplies a STATUS= line sent along with each ping.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        *,
        status: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self.interval = notifier.watchdog_interval if notifier.enabled else None
        self._status = status
        self._clock = clock
        self._lock = threading.Lock()
        self._loops: set[int] = set()
        self._beaten: set[int] = set()
        self._next_token = 0
        self._last_sent = clock()
        self.sent = 0

    def timeout(self, token: int) -> float | None:
        """How long loop *token* may block waiting for work before it must beat again.

        None (block forever) without a watchdog. Otherwise the time left until the next ping
        is due, so that no gap between pings grows past ``interval`` plus the time one file
        takes; a loop that already beat for the coming ping waits a full interval.
        """
        if self.interval is None:
            return None
        with self._lock:
            if token in self._beaten:
                return self.interval
            return max(0.0, self._last_sent + self.interval - self._clock())

    def register(self) -> int:
        """Add a loop; returns its token for :meth:`beat` and :meth:`unregister`."""
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._loops.add(token)
            return token

    def unregister(self, token: int) -> None:
        """Remove a loop that is ending on purpose."""
        with self._lock:
            self._loops.discard(token)
            self._beaten.discard(token)

    def beat(self, token: int) -> bool:
        """Loop *token* is alive. Returns True when this call sent WATCHDOG=1."""
        if self.interval is None:
            return False
        with self._lock:
            self._beaten.add(token)
            now = self._clock()
            if now - self._last_sent < self.interval or not self._loops <= self._beaten:
                return False
            self._last_sent = now
            self._beaten.clear()
            self.sent += 1
        return self._notifier.watchdog(self._status() if self._status else None)
