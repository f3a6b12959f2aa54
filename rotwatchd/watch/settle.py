"""Files seen in an inbox but not yet complete: wait until they settle, then queue them.

A file is *armed* by a close-after-write, a rename into the inbox, a rescan, or (polling mode)
any change; it is queued once its size and mtime stayed the same for ``quiet_period``, or only
``CLOSED_SETTLE`` after an event that proved it complete (close-after-write, a rename in): its
writer already said it is done, and the short settle only lets a writer that reopens the file
at once be seen. A file that still looks unfinished then is held by the processor, never
quarantined early. A file
that is being written (created/modified, not yet closed) waits for its close event; if none
ever comes (a hard link, a missed event) it is armed after ``WRITING_TIMEOUT`` of silence.
One thread waits on a condition variable for the earliest deadline: with nothing pending it
sleeps without a timeout, so an idle daemon does not wake up at all.

A file can also be *held*: looked at again only after a given delay (a file that looked
unfinished, a write that failed), optionally only once a readiness check passes (the output
folder can be written again), checking again with a doubling back-off until it does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rotwatchd.config import InboxConfig
from rotwatchd.threads.stoppable import StoppableThread
from rotwatchd.watch.workqueue import WorkItem, WorkQueue

log = logging.getLogger(__name__)

#: Silence after which a file that never reported close-after-write is treated as complete.
WRITING_TIMEOUT = 60.0
#: Settle after a close-after-write or a rename into the inbox (the quiet period is for files
#: no event proved complete: scans, polling, writers that never close).
CLOSED_SETTLE = 0.15
#: Longest pause between two readiness checks of a held file.
READY_CHECK_MAX = 60.0


@dataclass
class _Entry:
    inbox: InboxConfig
    armed: bool
    due: float
    last_event: float
    signature: tuple[int, int] | None
    confirmed: bool = False
    held: str | None = None  # why the file waits (status), for held files only
    ready: Callable[[], bool] | None = None
    backoff: float = 0.0  # next pause when ready() says not yet


def _signature(path: Path, stat: Callable[[Path], os.stat_result]) -> tuple[int, int] | None:
    try:
        st = stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _lstat(path: Path) -> os.stat_result:
    return os.lstat(path)


class Settler(StoppableThread):
    """Holds pending files; hands complete ones to ``queue`` without ever blocking on it."""

    def __init__(self, queue: WorkQueue, quiet_period: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 stat: Callable[[Path], os.stat_result] = _lstat,
                 on_activity: Callable[[float], None] = lambda event_time: None) -> None:
        super().__init__("rotwatchd-settler")
        self._queue = queue
        self.quiet_period = quiet_period
        self._clock = clock
        self._stat = stat
        self._on_activity = on_activity
        self._entries: dict[Path, _Entry] = {}
        self._queue_full = False
        self._space_generation = 0
        queue.on_space(self._space_available)

    # --- called from observer / rescan threads -------------------------------------------
    def note(self, path: Path, inbox: InboxConfig, *, armed: bool, scan: bool = False,
             confirmed: bool = False) -> None:
        """Record an event for ``path``.

        ``armed``: the file looks complete (closed, renamed in, found by a scan).
        ``confirmed``: an event proved it complete (close-after-write, rename into the inbox).
        ``scan``: the caller only found the file; it neither replaces a pending entry nor
        arms a file that is visibly still being written.
        """
        now = self._clock()
        signature = _signature(path, self._stat)
        with self._cond:
            entry = self._entries.get(path)
            if entry is not None and scan and (
                    entry.armed or now - entry.last_event < WRITING_TIMEOUT):
                return
            quiet = min(self.quiet_period, CLOSED_SETTLE) if confirmed else self.quiet_period
            due = now + (quiet if armed else WRITING_TIMEOUT)
            self._entries[path] = _Entry(inbox, armed, due, now, signature, armed and confirmed)
            self._cond.notify()
        self._on_activity(now)  # wakes a sleeping daemon early (power management)

    def hold(self, path: Path, inbox: InboxConfig, delay: float, why: str, *,
             ready: Callable[[], bool] | None = None) -> None:
        """Look at ``path`` again in ``delay`` seconds, unless an event for it comes first.

        ``why`` names the wait in :meth:`held`. With ``ready``, the file is queued only once
        ``ready()`` is true, checked at ``delay`` and then at doubling intervals (at most
        READY_CHECK_MAX). Scans do not cut a hold short; events for the file do.
        """
        now = self._clock()
        signature = _signature(path, self._stat)
        with self._cond:
            self._entries[path] = _Entry(inbox, True, now + delay, now, signature, True,
                                         held=why, ready=ready,
                                         backoff=min(max(delay, 1.0) * 2, READY_CHECK_MAX))
            self._cond.notify()

    def forget(self, path: Path) -> None:
        """The file went away (deleted or renamed out)."""
        with self._cond:
            self._entries.pop(path, None)

    def forget_under(self, folder: Path) -> None:
        """Drop every pending file of a folder that was removed or renamed away."""
        with self._cond:
            for path in [p for p in self._entries if p.is_relative_to(folder)]:
                del self._entries[path]

    def _space_available(self) -> None:
        with self._cond:
            self._space_generation += 1
            if self._queue_full:
                self._queue_full = False
                self._cond.notify()

    # --- observation ---------------------------------------------------------------------
    def pending(self) -> int:
        with self._cond:
            return len(self._entries)

    def is_pending(self, path: Path) -> bool:
        with self._cond:
            return path in self._entries

    def held(self) -> dict[str, list[Path]]:
        """Held files by the reason they wait (see :meth:`hold`)."""
        out: dict[str, list[Path]] = {}
        with self._cond:
            for path, entry in self._entries.items():
                if entry.held is not None:
                    out.setdefault(entry.held, []).append(path)
        return out

    # --- the thread ----------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._due_now():
                    self._cond.wait(self._next_wait())
                if self._stopping:
                    return
            self.settle_due()

    def _due_now(self) -> list[tuple[Path, _Entry]]:
        """Caller holds the lock. Entries whose deadline passed (none while the queue is full)."""
        if self._queue_full:
            return []
        now = self._clock()
        return [(p, e) for p, e in self._entries.items() if e.due <= now]

    def _next_wait(self) -> float | None:
        """Caller holds the lock. Seconds to the next deadline; None = wait for a notify."""
        if self._queue_full or not self._entries:
            return None
        return max(min(e.due for e in self._entries.values()) - self._clock(), 0.0)

    def settle_due(self) -> None:
        """One pass: every due file is queued if its size and mtime held still for a quiet
        period, re-armed if it changed, forgotten if it vanished. The thread calls this;
        tests with an injected clock call it directly."""
        with self._cond:
            due = self._due_now()
        for path, entry in due:
            self._settle(path, entry)

    def _settle(self, path: Path, entry: _Entry) -> None:
        signature = _signature(path, self._stat)
        ready = entry.ready is None or entry.ready()  # outside the lock: it may touch disks
        now = self._clock()
        with self._cond:
            if self._entries.get(path) is not entry:
                return  # a newer event replaced it meanwhile
            if signature is None:
                del self._entries[path]
                return
            if signature != entry.signature or not entry.armed:
                # still changing (or silent writer): wait one more quiet period
                entry.signature, entry.armed = signature, True
                entry.due = now + self.quiet_period
                return
            if not ready:
                entry.due = now + entry.backoff
                entry.backoff = min(entry.backoff * 2, READY_CHECK_MAX)
                return
            if self._queue_full:
                return
            generation = self._space_generation
        # offer outside the lock: activity listeners (power) may take their time
        accepted = self._queue.offer(
            WorkItem(path, entry.inbox, entry.last_event, entry.confirmed))
        with self._cond:
            if accepted:
                if self._entries.get(path) is entry:
                    del self._entries[path]
            elif generation == self._space_generation:
                log.debug("queue full; %s stays pending", path)
                self._queue_full = True
