"""The bounded queue between watching and inference, and the worker threads draining it.

Producers never block: :meth:`WorkQueue.offer` returns False when the queue is full and the
caller keeps the file pending. Workers block on a condition variable, so an idle daemon costs
no CPU. The queue also tells :class:`ActivityListener` objects when work arrives after an idle
spell and when everything is done: the seam the power helper's SleepController hangs on.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rotwatchd.config import InboxConfig
from rotwatchd.threads.stoppable import StoppableThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """A file that looked complete. ``detected_at`` is the monotonic time of its last event;
    ``confirmed`` says an event proved it complete (close-after-write, rename into the inbox)
    rather than only a quiet period (scans, polling, missed events)."""

    path: Path
    inbox: InboxConfig
    detected_at: float = field(default_factory=time.monotonic)
    confirmed: bool = True


class ActivityListener(Protocol):
    """Told about transitions; called outside the queue lock, from producer/worker threads."""

    def on_work_arrived(self) -> None:
        """The queue was idle (empty, nothing running) and an item was just accepted."""

    def on_idle(self) -> None:
        """The last running item finished and the queue is empty."""


class WorkQueue:
    """Bounded FIFO of :class:`WorkItem` without duplicates of a waiting path."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._items: collections.deque[WorkItem] = collections.deque()
        self._waiting: set[Path] = set()
        self._running_paths: collections.Counter[Path] = collections.Counter()
        self._deferred: dict[Path, WorkItem] = {}
        self._running = 0
        self._closed = False
        self._cond = threading.Condition()
        self._listeners: list[ActivityListener] = []
        self._space_callbacks: list[Callable[[], None]] = []

    # --- configuration -------------------------------------------------------------------
    def add_listener(self, listener: ActivityListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ActivityListener) -> None:
        self._listeners.remove(listener)

    def on_space(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs whenever a worker takes an item (room for one more)."""
        self._space_callbacks.append(callback)

    def set_maxsize(self, maxsize: int) -> None:
        """Change the bound (reload); items already queued beyond it are kept, never dropped."""
        with self._cond:
            self._maxsize = maxsize
        for callback in self._space_callbacks:
            callback()

    # --- producer side -------------------------------------------------------------------
    def offer(self, item: WorkItem) -> bool:
        """Queue ``item`` unless full. True if queued now or already waiting; never blocks.

        A path being processed right now is deferred and queued again when that run ends, so
        one file is never processed by two workers at once.
        """
        with self._cond:
            if item.path in self._waiting:
                return True
            if self._running_paths[item.path]:
                self._deferred[item.path] = item
                return True
            if len(self._items) >= self._maxsize or self._closed:
                return False
            was_idle = not self._items and self._running == 0
            self._items.append(item)
            self._waiting.add(item.path)
            self._cond.notify()
        if was_idle:
            for listener in list(self._listeners):
                listener.on_work_arrived()
        return True

    # --- consumer side -------------------------------------------------------------------
    def take(
        self, timeout: float | None = None, cancelled: Callable[[], bool] = lambda: False
    ) -> WorkItem | None:
        """Block until an item is available; None when closed, cancelled or on timeout.

        ``cancelled`` is re-checked whenever :meth:`wake_all` is called.
        """
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self._items or self._closed or cancelled(), timeout)
            if not ready or self._closed or cancelled():
                return None
            item = self._items.popleft()
            self._waiting.discard(item.path)
            self._running_paths[item.path] += 1
            self._running += 1
        for callback in self._space_callbacks:
            callback()
        return item

    def done(self, item: WorkItem) -> None:
        """A worker finished ``item`` (the one :meth:`take` gave it)."""
        with self._cond:
            self._running -= 1
            self._running_paths[item.path] -= 1
            if not self._running_paths[item.path]:
                del self._running_paths[item.path]
                again = self._deferred.pop(item.path, None)
                if again is not None:  # re-queued past the bound: it was accepted earlier
                    self._items.append(again)
                    self._waiting.add(again.path)
            idle = not self._items and self._running == 0
            self._cond.notify_all()
        if idle:
            for listener in list(self._listeners):
                listener.on_idle()

    def close(self) -> None:
        """Wake every worker so it exits after its current item. Queued items stay unprocessed
        (they are not journaled, so the next start's rescan finds them again)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wake_all(self) -> None:
        """Make blocked :meth:`take` calls re-check their ``cancelled`` predicate."""
        with self._cond:
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    # --- observation ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Items waiting (not counting those being processed)."""
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (until :meth:`reopen`)."""
        with self._cond:
            return self._closed

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    def holds(self, path: Path) -> bool:
        """True while ``path`` waits in the queue, is being processed or is deferred behind
        its own run: a scan need not note it again (a change made meanwhile shows in its
        stat once the run has recorded the one it read)."""
        with self._cond:
            return (path in self._waiting or path in self._running_paths
                    or path in self._deferred)

    def is_idle(self) -> bool:
        with self._cond:
            return not self._items and self._running == 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running. Returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and self._running == 0, timeout)


class Heartbeat(Protocol):
    """Liveness pings from the worker loops (``rotwatchd.service.notify.Heartbeat`` fits)."""

    def register(self) -> int: ...
    def unregister(self, token: int) -> None: ...
    def timeout(self, token: int) -> float | None: ...
    def beat(self, token: int) -> bool: ...


class Worker(StoppableThread):
    """Takes items from ``queue`` and hands each to ``handle``; stop() after the current one.

    With a ``heartbeat`` the loop also turns when no work comes, at the interval the heartbeat
    asks for (systemd's WatchdogSec / 2), and beats on every turn, so a ping proves the loop
    itself is alive, also while the daemon is asleep. Without one it blocks without timeout.
    """

    def __init__(self, queue: WorkQueue, handle: Callable[[WorkItem], None], name: str,
                 heartbeat: Heartbeat | None = None) -> None:
        super().__init__(name)
        self._queue = queue
        self._process = handle  # not _handle: threading.Thread uses that name itself (3.13)
        self._heartbeat = heartbeat

    def on_stop(self) -> None:
        """The loop waits in the queue: wake it (it exits after its current item)."""
        self._queue.wake_all()

    def run(self) -> None:
        beat = self._heartbeat
        token = beat.register() if beat is not None else 0
        try:
            while not self.stopping:
                timeout = beat.timeout(token) if beat is not None else None
                item = self._queue.take(timeout, cancelled=lambda: self.stopping)
                if beat is not None:
                    beat.beat(token)
                if item is None:
                    if timeout is None or self._queue.closed or self.stopping:
                        return
                    continue  # a heartbeat turn: nothing arrived within the interval
                try:
                    self._process(item)
                except Exception:  # the handler logs and journals; this is the last safety net
                    log.exception("unexpected failure while processing %s", item.path)
                finally:
                    self._queue.done(item)
        finally:
            if beat is not None:
                beat.unregister(token)
