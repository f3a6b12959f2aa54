"""SleepController: idle -> asleep -> awake, with governors and the model following along.

States and who moves them:

* ``awake``: normal work. The controller thread waits (condition, no polling) until
  ``power.idle_timeout`` seconds pass with an empty queue and no file in progress, then
* ``asleep``: governors switched to ``power.idle_governor``, the classifier optionally released.
  The controller thread waits on its condition with no timeout at all; workers asking for work
  (:meth:`SleepController.begin_work`) park on the same condition.
* ``waking``: set by the first :meth:`~SleepController.activity` (a new file) or
  :meth:`~SleepController.begin_work`; the controller thread restores the governors (originals,
  or ``power.active_governor``), reloads the model if it was released, then goes ``awake`` and
  releases the parked workers. The time from the triggering event to the next inference start
  is the wake-up latency, logged and kept for the status JSON.

The transition logic is :meth:`SleepController.step`, which tests drive with an injected clock;
:meth:`start` runs it on a stoppable thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from rotwatchd.config import PowerConfig
from rotwatchd.power.governor import GovernorControl
from rotwatchd.power.heap import return_free_heap
from rotwatchd.power.policy import percentile, seconds_until_sleep, wake_target
from rotwatchd.threads.stoppable import StoppableThread

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class PowerState(StrEnum):
    AWAKE = "awake"
    ASLEEP = "asleep"
    WAKING = "waking"


class ReleasableModel(Protocol):
    """What the controller needs from the classifier holder (``ClassifierPool`` fits)."""

    def release(self) -> None: ...

    def reload(self) -> None: ...


class SleepController(StoppableThread):
    """Parks the workers and lowers the CPU governors while the daemon is idle.

    Inputs: the ``power`` settings, a :class:`GovernorControl` (None = no governor handling),
    ``queue_depth`` (a callable returning the number of queued files), an optional model holder
    to release while asleep, a monotonic ``clock`` and ``return_heap``, called on every fall
    asleep to give the C heap's free pages back (:func:`~rotwatchd.power.heap.return_free_heap`).
    Thread-safe.
    """

    LATENCY_WINDOW = 200  # recent wake latencies kept for p50/p95 in the status JSON

    def __init__(
        self,
        settings: PowerConfig,
        governors: GovernorControl | None,
        queue_depth: Callable[[], int],
        *,
        model: ReleasableModel | None = None,
        clock: Clock = time.monotonic,
        return_heap: Callable[[], object] = return_free_heap,
    ) -> None:
        super().__init__("rotwatchd-sleep")
        self._return_heap = return_heap
        self.settings = settings
        self.governors = governors
        self._queue_depth = queue_depth
        self._model = model
        self._clock = clock
        self._state = PowerState.AWAKE
        self._state_since = clock()
        self._last_activity = clock()
        self._busy = 0
        self._model_released = False
        self._wake_trigger: float | None = None  # event time that started the current wake
        self._latency_pending: float | None = None  # same, until the next inference starts
        self._latencies: deque[float] = deque(maxlen=self.LATENCY_WINDOW)
        self._transitions: deque[float] = deque(maxlen=self.LATENCY_WINDOW)  # trigger -> awake
        self.sleeps = 0
        self.wakes = 0
        self._listeners: list[Callable[[PowerState], None]] = []
        self._in_transition = False  # sleep/wake I/O under way (state already says where to)
        self._changes = 0  # bumped on every notify, so the loop never sleeps through one
        self._seen_changes = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Remember the original governors and start the controller thread."""
        if self.governors is not None:
            self.governors.remember_originals()
        super().start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread, release parked workers and restore the original governors.

        Safe to call more than once and from a signal-driven shutdown path.
        """
        if threading.current_thread() is self:  # a listener's shutdown path: cannot join
            self.stop()
        else:
            self.stop_and_join(timeout)
        if self.governors is not None:
            self.governors.restore()

    def update_settings(self, settings: PowerConfig) -> None:
        """Use reloaded settings from now on (a new idle_timeout counts from the last
        activity; governors already written stay until the next sleep or wake)."""
        with self._cond:
            self.settings = settings
            self._notify()

    def add_listener(self, callback: Callable[[PowerState], None]) -> None:
        """Call *callback(state)* from the controller thread: ASLEEP just before the idle
        governor is written, AWAKE once the wake is complete."""
        self._listeners.append(callback)

    # -- called by the watcher and the workers ---------------------------------------------
    def activity(self, event_time: float | None = None) -> None:
        """A new file was seen (at *event_time*, default now): reset the idle timer, wake up."""
        with self._cond:
            now = self._clock()
            self._last_activity = now
            if self._state is PowerState.ASLEEP:
                self._begin_wake(event_time if event_time is not None else now)

    def begin_work(self, timeout: float | None = None) -> bool:
        """Called by a worker holding a file, before processing it.

        Wakes the daemon if needed and blocks (parked on the condition) until it is awake.
        Returns True when the worker may go on (it is then counted busy until
        :meth:`end_work`), False on shutdown or when *timeout* passed first.
        """
        with self._cond:
            if self._state is PowerState.ASLEEP:
                self._begin_wake(self._clock())
            ok = self._cond.wait_for(
                lambda: self._stopping or self._state is PowerState.AWAKE, timeout
            )
            if not ok or self._stopping:
                return False
            self._busy += 1
            self._last_activity = self._clock()
            return True

    def end_work(self) -> None:
        """A worker finished a file (whatever the outcome): restart the idle timer."""
        with self._cond:
            self._busy = max(0, self._busy - 1)
            self._last_activity = self._clock()
            self._latency_pending = None  # a file without inference ends the measurement
            self._notify()

    def inference_started(self) -> float | None:
        """Called right before ``predict``: returns (and logs) the wake latency in seconds if
        this is the first inference since a wake, else None."""
        with self._cond:
            trigger, self._latency_pending = self._latency_pending, None
            if trigger is None:
                return None
            latency = max(0.0, self._clock() - trigger)
            self._latencies.append(latency)
            transition = self._transitions[-1] if self._transitions else 0.0
        log.info(
            "power: woke up in %.1f ms (event -> inference start; the wake itself %.1f ms)",
            latency * 1000,
            transition * 1000,
        )
        return latency

    def wait_asleep(self, timeout: float) -> bool:
        """Block until the daemon is asleep with the idle governor written (tests, benchmarks).
        Returns the outcome."""
        return self._wait_settled(PowerState.ASLEEP, timeout)

    def wait_awake(self, timeout: float) -> bool:
        """Block until the daemon is awake. Returns the outcome."""
        return self._wait_settled(PowerState.AWAKE, timeout)

    def _wait_settled(self, state: PowerState, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: self._state is state and not self._in_transition, timeout
            )

    # -- state machine ---------------------------------------------------------------------
    @property
    def state(self) -> PowerState:
        with self._cond:
            return self._state

    def _notify(self) -> None:
        """Caller holds the lock."""
        self._changes += 1
        self._cond.notify_all()

    def _begin_wake(self, trigger: float) -> None:
        """Caller holds the lock and saw ASLEEP."""
        self._state = PowerState.WAKING
        self._wake_trigger = trigger
        self._notify()

    def step(self) -> float | None:
        """Do the transition that is due now, if any.

        Returns how long the controller may wait before the next step: seconds, or None for
        "until notified". Only one thread (the controller's, or a test) may call it.
        """
        with self._cond:
            self._seen_changes = self._changes
            if self._stopping:
                return None
            if self._state is PowerState.WAKING:
                action: Callable[[], None] = self._wake
            elif self._state is PowerState.ASLEEP:
                return None
            else:
                if not self.settings.sleep_enabled:
                    return None
                remaining = seconds_until_sleep(
                    self._clock(),
                    self._last_activity,
                    self.settings.idle_timeout,
                    self._queue_depth(),
                    self._busy,
                )
                if remaining is None:
                    # Work queued or running: end_work notifies; the timeout only covers files
                    # queued by a path that never calls activity() (a periodic rescan).
                    return self.settings.idle_timeout
                if remaining > 0:
                    return remaining
                # Mark asleep before the slow part so that activity() during it turns into a
                # wake that this thread runs right after.
                self._state = PowerState.ASLEEP
                self._state_since = self._clock()
                action = self._sleep
            self._in_transition = True
        try:
            action()
        finally:
            with self._cond:
                self._in_transition = False
                self._notify()
        return 0.0

    def _sleep(self) -> None:
        # Listeners first: the PowerManager must stop writing before the idle governor goes in.
        self._tell(PowerState.ASLEEP)
        release = self.settings.release_model_when_idle and self._model is not None
        if self.governors is not None:
            self.governors.apply(self.settings.idle_governor)
        if release and self._model is not None:
            self._model.release()
        self._return_heap()  # what the batch just freed goes back to the system while asleep
        with self._cond:
            self._model_released = release
            self.sleeps += 1
            self._notify()
        what = [f"governor {self.settings.idle_governor}"] if self._has_governors() else []
        if release:
            what.append("model released")
        log.info("power: idle for %gs, sleeping%s", self.settings.idle_timeout,
                 f" ({', '.join(what)})" if what else "")

    def _has_governors(self) -> bool:
        """Whether there are governors to switch (a VM or container often has none)."""
        return self.governors is not None and self.governors.usable

    def _wake(self) -> None:
        if self.governors is not None:
            self.governors.apply(
                wake_target(self.governors.originals, self.settings.active_governor)
            )
        with self._cond:
            reload = self._model_released
        if reload and self._model is not None:
            try:
                self._model.reload()
            except Exception:
                # Workers load lazily through the slot; a failed eager reload surfaces there,
                # with the file that needed it, instead of killing the controller thread.
                log.exception("power: reloading the model after sleep failed")
        with self._cond:
            self._model_released = False
            self._state = PowerState.AWAKE
            self._state_since = self._clock()
            self._last_activity = self._clock()
            self._latency_pending = self._wake_trigger
            if self._wake_trigger is not None:
                self._transitions.append(max(0.0, self._clock() - self._wake_trigger))
            self.wakes += 1
            self._notify()
        log.info("power: awake")
        self._tell(PowerState.AWAKE)

    def _tell(self, state: PowerState) -> None:
        for callback in self._listeners:
            try:
                callback(state)
            except Exception:
                log.exception("power: state listener failed")

    def run(self) -> None:
        while True:
            wait = self.step()
            with self._cond:
                if self._stopping:
                    return
                if self._changes != self._seen_changes:
                    continue  # something happened while step() ran unlocked: look again
                if wait is None:
                    self._cond.wait()
                elif wait > 0:
                    self._cond.wait(wait)

    # -- reporting -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Power state for the daemon's status JSON (plain JSON types only)."""
        with self._cond:
            latencies = list(self._latencies)
            transitions = list(self._transitions)
            result: dict[str, Any] = {
                "state": self._state.value,
                "state_seconds": round(self._clock() - self._state_since, 3),
                "sleeps": self.sleeps,
                "wakes": self.wakes,
                "model_released": self._model_released,
                "idle_timeout": self.settings.idle_timeout,
            }
        for key, values in (("wake_latency_ms", latencies), ("wake_transition_ms", transitions)):
            if values:
                result[key] = {
                    "last": round(values[-1] * 1000, 2),
                    "p50": round(percentile(values, 0.5) * 1000, 2),
                    "p95": round(percentile(values, 0.95) * 1000, 2),
                    "count": len(values),
                }
        if self.governors is not None:
            result["governors"] = self.governors.current()
            result["governor_problems"] = list(self.governors.problems)
        return result
