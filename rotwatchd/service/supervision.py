"""The daemon as a systemd service: lifecycle -> sd_notify, one STATUS= line, the watchdog.

``SystemdSupervision.attach(daemon)`` connects a
:class:`~rotwatchd.service.notify.SystemdNotifier` to the daemon's seams: ``READY=1`` once every
inbox is watched, ``RELOADING=1`` then ``READY=1`` around a reload (also a rejected one, so
``systemctl reload`` always completes), ``STOPPING=1`` when shutdown begins, ``WATCHDOG=1`` from
the worker loops (see :class:`~rotwatchd.service.notify.Heartbeat`), and a ``STATUS=`` line with
queue depth, counts and the power state whenever one of those changes. Outside systemd
everything is a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rotwatchd.service.daemon import Lifecycle
from rotwatchd.service.notify import Heartbeat, SystemdNotifier

if TYPE_CHECKING:
    from rotwatchd.service.daemon import Daemon

log = logging.getLogger(__name__)


def status_line(document: Mapping[str, Any]) -> str:
    """One line for ``systemctl status`` from a status.json document (pure).

    Example: ``queue 2 (1 running, 0 settling); done 40, review 3; power asleep``.
    """
    queue = document.get("queue") or {}
    counts = document.get("counts") or {}
    power = document.get("power") or {}
    parts = [
        f"queue {queue.get('depth', 0)} ({queue.get('running', 0)} running, "
        f"{queue.get('pending', 0)} settling)"
    ]
    seen = {name: n for name, n in sorted(counts.items()) if n}
    parts.append(", ".join(f"{name} {n}" for name, n in seen.items()) or "no files yet")
    parts.append(f"power {power.get('state', 'unknown')}")
    return "; ".join(parts)


class SystemdSupervision(Lifecycle):
    """Lifecycle and queue listener that reports the daemon to systemd."""

    def __init__(self, daemon: Daemon, notifier: SystemdNotifier | None = None) -> None:
        self.daemon = daemon
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.heartbeat = Heartbeat(self.notifier, status=self.status_text)
        self._lock = threading.Lock()
        self._reloading = False

    @classmethod
    def attach(
        cls, daemon: Daemon, notifier: SystemdNotifier | None = None
    ) -> SystemdSupervision:
        """Connect to *daemon* before its start(); returns the supervision object."""
        supervision = cls(daemon, notifier)
        if supervision.heartbeat.interval is not None:
            daemon.set_heartbeat(supervision.heartbeat)
            log.info("systemd watchdog: pinging every %.1fs", supervision.heartbeat.interval)
        daemon.add_lifecycle_listener(supervision)
        daemon.queue.add_listener(supervision)
        return supervision

    def status_text(self) -> str:
        """The current STATUS= line (never raises: a broken status must not stop pings)."""
        try:
            return status_line(self.daemon.snapshot())
        except Exception as exc:
            return f"status unavailable: {exc}"

    def send_status(self) -> None:
        """Send STATUS= now (on state changes)."""
        if self.notifier.enabled:
            self.notifier.status(self.status_text())

    # -- Lifecycle -------------------------------------------------------------------------
    def on_ready(self) -> None:
        self.notifier.ready(self.status_text() if self.notifier.enabled else None)

    def on_reloading(self) -> None:
        with self._lock:
            if self._reloading:
                return
            self._reloading = True
        self.notifier.reloading()

    def on_reloaded(self, error: str | None) -> None:
        # A file that fails validation never reaches Daemon.reload(), so on_reloading was not
        # called: systemd still needs the RELOADING=1 / READY=1 pair to finish the reload job.
        self.on_reloading()
        with self._lock:
            self._reloading = False
        if error is None:
            self.notifier.ready(self.status_text() if self.notifier.enabled else None)
        else:
            self.notifier.ready(f"reload rejected, old configuration kept: {error}")

    def on_stopping(self) -> None:
        self.notifier.stopping()

    # -- queue ActivityListener --------------------------------------------------------------
    def on_work_arrived(self) -> None:
        self.send_status()

    def on_idle(self) -> None:
        self.send_status()
