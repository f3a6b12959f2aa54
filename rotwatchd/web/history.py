"""A bounded in-memory history of the daemon, one slot per minute, for the status page's plots.

Fed by events only (each processed file, each power-state change), never by a timer, so it
costs nothing while nothing happens. Time asleep is recorded as intervals: an interval still
open is counted up to the moment the history is read. Thread-safe; the clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

MINUTE = 60
#: Outcomes that are not a file handled (a duplicate event, a file that must wait).
NOT_HANDLED = frozenset({"skipped", "deferred"})


@dataclass(frozen=True)
class Minute:
    """What happened during minute number ``index`` (Unix time // 60)."""

    index: int
    handled: int = 0  # files with an outcome (done, review, quarantined, ignored, error)
    review: int = 0
    errors: int = 0
    timed: int = 0  # files whose processing time is in seconds_sum/seconds_max
    seconds_sum: float = 0.0
    seconds_max: float = 0.0
    asleep: float = 0.0  # seconds of this minute spent asleep

    @property
    def start(self) -> float:
        return float(self.index * MINUTE)

    @property
    def review_share(self) -> float | None:
        return self.review / self.handled if self.handled else None

    @property
    def mean_seconds(self) -> float | None:
        return self.seconds_sum / self.timed if self.timed else None


class MinuteHistory:
    """The last ``minutes`` minutes (a ring of :class:`Minute`, oldest slots overwritten)."""

    def __init__(self, minutes: int = 360, *, clock: Callable[[], float] = time.time) -> None:
        if minutes < 1:
            raise ValueError("minutes must be at least 1")
        self.minutes = minutes
        self._clock = clock
        self._ring: list[Minute | None] = [None] * minutes
        self._asleep_since: float | None = None
        self._lock = threading.Lock()

    def add_result(self, outcome: str, seconds: float | None) -> None:
        """One processed file with its outcome and, when known, its processing time."""
        if outcome in NOT_HANDLED:
            return
        now = self._clock()
        with self._lock:
            slot = self._slot(int(now // MINUTE))
            timed = seconds is not None and outcome in ("done", "review")
            self._store(replace(
                slot, handled=slot.handled + 1,
                review=slot.review + (outcome == "review"),
                errors=slot.errors + (outcome == "error"),
                timed=slot.timed + timed,
                seconds_sum=slot.seconds_sum + (seconds if timed and seconds else 0.0),
                seconds_max=max(slot.seconds_max, seconds if timed and seconds else 0.0)))

    def power_state(self, state: str) -> None:
        """The power state now (``asleep``, ``awake``, ``waking``, ...); repeats are harmless."""
        now = self._clock()
        with self._lock:
            if state == "asleep" and self._asleep_since is None:
                self._asleep_since = now
            elif state != "asleep" and self._asleep_since is not None:
                self._add_asleep(self._asleep_since, now)
                self._asleep_since = None

    def minutes_until_now(self) -> list[Minute]:
        """One :class:`Minute` per minute of the window, oldest first, the current one last
        (an open asleep interval counted up to now)."""
        now = self._clock()
        current = int(now // MINUTE)
        with self._lock:
            ring = list(self._ring)
            since = self._asleep_since
        out: list[Minute] = []
        for index in range(current - self.minutes + 1, current + 1):
            slot = ring[index % self.minutes]
            minute = slot if slot is not None and slot.index == index else Minute(index)
            if since is not None:
                overlap = min(now, minute.start + MINUTE) - max(since, minute.start)
                if overlap > 0:
                    minute = replace(minute, asleep=minute.asleep + overlap)
            out.append(minute)
        return out

    def _slot(self, index: int) -> Minute:
        slot = self._ring[index % self.minutes]
        return slot if slot is not None and slot.index == index else Minute(index)

    def _store(self, minute: Minute) -> None:
        self._ring[minute.index % self.minutes] = minute

    def _add_asleep(self, start: float, end: float) -> None:
        """Spread [start, end) over the minutes it covers (those still in the window)."""
        first = max(int(start // MINUTE), int(end // MINUTE) - self.minutes + 1)
        for index in range(first, int(end // MINUTE) + 1):
            slot = self._slot(index)
            overlap = min(end, slot.start + MINUTE) - max(start, slot.start)
            if overlap > 0:
                self._store(replace(slot, asleep=slot.asleep + overlap))
