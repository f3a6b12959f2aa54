"""PowerManager: while awake, pick the balanced or the performance governor from the load.

A stoppable thread samples the queue depth and the system CPU load (psutil) every ``interval``
seconds, asks :func:`rotwatchd.power.policy.choose_mode` (pure, with hysteresis and a minimum
dwell time) for the mode, and writes the governor only when the mode changes. While the
SleepController has the daemon asleep the manager does not sample at all: it waits on its
condition with no timeout until the controller reports the wake, so sleeping stays free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psutil

from rotwatchd.config import PowerConfig
from rotwatchd.power.governor import GovernorControl
from rotwatchd.power.policy import (
    DynamicState,
    DynamicThresholds,
    Mode,
    choose_mode,
    governor_for_mode,
)
from rotwatchd.power.sleep import PowerState
from rotwatchd.threads.stoppable import StoppableThread

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = DynamicThresholds()


def system_cpu_percent() -> float:
    """System-wide CPU use since the previous call, 0-100 (psutil, non-blocking)."""
    return float(psutil.cpu_percent(interval=None))


class PowerManager(StoppableThread):
    """Dynamic governor choice while awake.

    Inputs: settings (``balanced_governor``, ``performance_governor``), the GovernorControl,
    ``queue_depth`` callable, and injectable ``cpu_percent`` and ``clock`` for tests.
    Call :meth:`on_power_state` from the SleepController's listener hook.
    """

    def __init__(
        self,
        settings: PowerConfig,
        governors: GovernorControl,
        queue_depth: Callable[[], int],
        *,
        interval: float = 2.0,
        thresholds: DynamicThresholds = DEFAULT_THRESHOLDS,
        cpu_percent: Callable[[], float] = system_cpu_percent,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("rotwatchd-power")
        self.settings = settings
        self.governors = governors
        self._queue_depth = queue_depth
        self.interval = interval
        self.thresholds = thresholds
        self._cpu_percent = cpu_percent
        self._clock = clock
        self._asleep = False
        self._fresh_wake = True  # the governor must be (re)written on the next sample
        # A fresh state may switch at once: since is set one dwell in the past.
        self._state = DynamicState(Mode.BALANCED, clock() - thresholds.min_dwell)
        self.switches = 0

    @property
    def mode(self) -> Mode:
        with self._cond:
            return self._state.mode

    def sample(self) -> Mode:
        """Take one load sample, switch the governor if the mode changed; returns the mode.

        Does nothing while asleep (the SleepController owns the governors then).
        """
        queue_depth = self._queue_depth()
        cpu = self._cpu_percent()
        # The write happens under the lock: on_power_state(ASLEEP) then waits for it, so the
        # SleepController's idle governor is never overwritten by a sample already in flight.
        with self._cond:
            if self._asleep:
                return self._state.mode
            previous = self._state
            self._state = choose_mode(previous, self._clock(), queue_depth, cpu, self.thresholds)
            changed = self._state is not previous
            rewrite = changed or self._fresh_wake
            self._fresh_wake = False
            mode = self._state.mode
            if rewrite:
                governor = governor_for_mode(
                    mode, self.settings.balanced_governor, self.settings.performance_governor
                )
                self.governors.apply(governor)
            if changed:
                self.switches += 1
                log.info(
                    "power: %s mode (queue %d, cpu %.0f%%)%s", mode.value, queue_depth, cpu,
                    f", governor {governor}" if self.governors.usable else "",
                )
        return mode

    def on_power_state(self, state: PowerState) -> None:
        """SleepController listener: pause while asleep, resample at once after a wake.

        Called with ASLEEP *before* the controller writes the idle governor.
        """
        with self._cond:
            self._asleep = state is PowerState.ASLEEP
            if state is PowerState.AWAKE:
                self._fresh_wake = True
            self._cond.notify_all()

    def run(self) -> None:
        """The sampling loop (``start()``; ``stop_and_join()``: the SleepController restores
        the governors)."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or not self._asleep)
                if self._stopping:
                    return
            self.sample()
            with self._cond:
                # Woken early by stop() or a sleep/wake notice, otherwise one interval.
                self._cond.wait_for(
                    lambda: self._stopping or self._asleep or self._fresh_wake, self.interval
                )

    def status(self) -> dict[str, Any]:
        """Dynamic-mode facts for the status JSON."""
        with self._cond:
            return {"mode": self._state.mode.value, "switches": self.switches}
