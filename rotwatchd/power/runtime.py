"""PowerRuntime: the power pieces assembled and hung on a running Daemon's seams.

``PowerRuntime.attach(daemon)`` is all ``rotwatchd run`` needs: it builds the GovernorControl
(``power.cpufreq_path``), the SleepController (hooks around every file, the daemon's
ClassifierPool to release while asleep) and, with ``power.dynamic``, the PowerManager; then it
follows the daemon's lifecycle: start on ready, apply new power settings on reload, stop and
restore the original governors when shutdown begins.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotwatchd.config import PowerConfig
from rotwatchd.power.governor import GovernorControl
from rotwatchd.power.manager import PowerManager, system_cpu_percent
from rotwatchd.power.sleep import PowerState, ReleasableModel, SleepController
from rotwatchd.service.daemon import Lifecycle

if TYPE_CHECKING:
    from rotwatchd.service.daemon import Daemon

log = logging.getLogger(__name__)

# Read once at start: changing them while running would strand governors written under the
# old root, or leave the PowerManager half-wired. A reload keeps the old value and says so.
RESTART_ONLY = ("cpufreq_path", "dynamic")


def originals_file(env: Mapping[str, str]) -> Path | None:
    """Where the original governors outlive a killed daemon: ``governors.json`` in the first
    of systemd's ``$RUNTIME_DIRECTORY`` (``RuntimeDirectoryPreserve=restart`` keeps it over a
    watchdog restart, a stop removes it); None outside such a unit."""
    first = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(first) / "governors.json" if first else None


class PowerRuntime(Lifecycle):
    """Owns the SleepController and the optional PowerManager of one daemon run.

    Inputs: the power settings, ``queue_depth`` (files waiting), the model holder to release,
    and injectable ``clock``/``cpu_percent`` for tests. Also an ActivityListener for the
    daemon's WorkQueue: work arriving after an idle spell starts the wake before a worker
    even takes the file.
    """

    def __init__(
        self,
        settings: PowerConfig,
        *,
        queue_depth: Callable[[], int],
        model: ReleasableModel | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_percent: Callable[[], float] = system_cpu_percent,
        governors_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.governors = GovernorControl(settings.cpufreq_path, governors_file)
        self.sleep = SleepController(
            settings, self.governors, queue_depth, model=model, clock=clock
        )
        self.manager: PowerManager | None = None
        if settings.dynamic:
            self.manager = PowerManager(
                settings, self.governors, queue_depth, cpu_percent=cpu_percent, clock=clock
            )
            self.sleep.add_listener(self.manager.on_power_state)
        self._daemon: Daemon | None = None
        self._started = False
        self._closed = False

    @classmethod
    def attach(cls, daemon: Daemon, *,
               cpu_percent: Callable[[], float] = system_cpu_percent) -> PowerRuntime:
        """Build from ``daemon.config.power`` and connect to the daemon; call before start().
        ``cpu_percent`` is the system's load as dynamic mode reads it (0..100; a seam for
        tests, whose machine may be busy with anything)."""
        runtime = cls(
            daemon.config.power,
            queue_depth=lambda: daemon.queue.depth,
            model=daemon.model,
            cpu_percent=cpu_percent,
            governors_file=originals_file(os.environ),
        )
        runtime._daemon = daemon
        daemon.set_hooks(runtime.sleep)
        daemon.set_power_status(runtime.status)
        daemon.queue.add_listener(runtime)
        daemon.add_lifecycle_listener(runtime)
        runtime.sleep.add_listener(lambda state: daemon.mark_status_dirty())
        return runtime

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Remember the original governors, start the controller (and manager) threads."""
        if self._started or self._closed:
            return
        self._started = True
        self.sleep.start()
        if self.manager is not None:
            self.manager.start()

    def close(self) -> None:
        """Stop the threads and restore the original governors. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.manager is not None:
            self.manager.stop_and_join(10.0)
        self.sleep.close()  # joins its thread, then writes the originals back
        if self.governors.usable:
            log.info("power: governors restored")

    def on_ready(self) -> None:
        self.start()

    def on_stopping(self) -> None:
        self.close()

    def on_reloaded(self, error: str | None) -> None:
        if error is None and self._daemon is not None:
            self.update(self._daemon.config.power)

    def on_work_arrived(self) -> None:
        self.sleep.activity()

    def on_idle(self) -> None:
        """Nothing to do: end_work already restarted the idle timer."""

    def update(self, new: PowerConfig) -> None:
        """Apply reloaded settings; :data:`RESTART_ONLY` keys keep their running value."""
        for key in RESTART_ONLY:
            if getattr(new, key) != getattr(self.settings, key):
                log.warning("power.%s changed: takes effect after a restart", key)
        kept = {key: getattr(self.settings, key) for key in RESTART_ONLY}
        self.settings = dataclasses.replace(new, **kept)
        self.sleep.update_settings(self.settings)
        if self.manager is not None:
            self.manager.settings = self.settings

    # -- reporting -------------------------------------------------------------------------
    @property
    def state(self) -> PowerState:
        return self.sleep.state

    def status(self) -> dict[str, Any]:
        """The ``power`` object of status.json."""
        result = self.sleep.status()
        if self.manager is not None:
            result["dynamic"] = self.manager.status()
        return result
