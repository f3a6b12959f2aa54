"""watchdog's inotify observer, made to report what it otherwise only logs or swallows.

watchdog handles three troubles quietly, each of which would leave files unnoticed until the
next full rescan: the kernel's event queue overflowed (events were lost; it only logs), a
subfolder could not be watched (the ``fs.inotify.max_user_watches`` limit; swallowed), and the
watched folder's own watch went away (unmounted, or the folder moved away; dropped or
ignored). :class:`ReportingInotifyObserver`
turns each into an event for the handler: :class:`EventsLostEvent`, :class:`WatchFailedEvent`
and :class:`WatchGoneEvent`. It hooks into watchdog's inotify internals (watchdog 7); where
those are missing, :func:`reporting_inotify_observer` returns the plain observer.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent
from watchdog.observers.inotify import InotifyObserver

try:  # watchdog 7 internals; older releases lack them
    from watchdog.observers.inotify import InotifyFullEmitter, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyConstants, Mask

    HOOKS = True
except ImportError:  # pragma: no cover - depends on the installed watchdog
    HOOKS = False

#: Where the kernel limits are read (tests point elsewhere).
SYSCTL_ROOT = Path("/proc/sys")

_LIMITS = {errno.ENOSPC: ("watch", "fs.inotify.max_user_watches", 524288),
           errno.EMFILE: ("instance", "fs.inotify.max_user_instances", 1024)}


def limit_hint(error: int, sysctl_root: Path = SYSCTL_ROOT) -> str | None:
    """What an inotify errno means and how to lift it, naming the limit and its current
    value (read under ``sysctl_root``); None for errors that are not a limit."""
    if error == errno.ENOMEM:
        return "the kernel refused memory for inotify watches"
    if error not in _LIMITS:
        return None
    what, key, suggested = _LIMITS[error]
    try:
        now = (sysctl_root / key.replace(".", "/")).read_text().strip()
    except OSError:
        now = "?"
    return (f"inotify {what} limit reached ({key} = {now}); raise it with "
            f"'sysctl -w {key}={suggested}' and keep it in /etc/sysctl.d/")


#: add-watch errors that mean a kernel limit, not a vanished or forbidden folder
LIMIT_ERRORS = frozenset({errno.ENOSPC, errno.ENOMEM})

#: Called with the folder (bytes) before each inotify_add_watch; raising OSError refuses it.
WatchGuard = Callable[[bytes], None]


class EventsLostEvent(FileSystemEvent):
    """The kernel's inotify queue overflowed: events below ``src_path`` were lost."""

    event_type = "rotwatchd_events_lost"
    is_directory = True


@dataclass(unsafe_hash=True)
class WatchFailedEvent(FileSystemEvent):
    """The subfolder ``src_path`` could not be watched; ``error`` is the errno (a limit)."""

    event_type = "rotwatchd_watch_failed"
    is_directory = True
    error: int = 0


class WatchGoneEvent(FileSystemEvent):
    """The watch on the watched folder ``src_path`` itself went away (removed, unmounted)."""

    event_type = "rotwatchd_watch_gone"
    is_directory = True


class _GuardedFD:
    """Stands in for watchdog's InotifyFD inside one watch group: reports refused watches."""

    def __init__(self, fd: Any, guard: WatchGuard | None,
                 refused: Callable[[bytes, OSError], None]) -> None:
        self._fd = fd
        self._guard = guard
        self._refused = refused

    def add_callback(self, path: bytes, *args: Any) -> Any:
        try:
            if self._guard is not None:
                self._guard(path)
            return self._fd.add_callback(path, *args)
        except OSError as exc:
            self._refused(path, exc)
            raise

    def remove_callbacks(self, callbacks: Any) -> None:
        self._fd.remove_callbacks(callbacks)


if HOOKS:

    @dataclass
    class _ReportingWatchGroup(InotifyWatchGroup):
        """watchdog's watch group that also queues our events through ``report``."""

        report: Callable[[FileSystemEvent], None] = lambda event: None

        def on_queue_overflow(self) -> None:
            super().on_queue_overflow()
            if self.is_active:
                self.report(EventsLostEvent(os.fsdecode(self.path)))

        def on_event(self, event: Any) -> None:
            if event.is_move_self:  # asked for only to see the watched folder itself move
                if self.is_active and self._active_callbacks_by_path.get(self.path) == event.wd:
                    self.report(WatchGoneEvent(os.fsdecode(self.path)))
                return
            super().on_event(event)

        def on_watch_deleted(self, wd: Any) -> None:
            root = self.is_active and self._active_callbacks_by_path.get(self.path) == wd
            super().on_watch_deleted(wd)
            if root:
                self.report(WatchGoneEvent(os.fsdecode(self.path)))

    class _ReportingEmitter(InotifyFullEmitter):
        """watchdog's full inotify emitter, building a reporting watch group."""

        def __init__(self, *args: Any, guard: WatchGuard | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard = guard

        def on_thread_start(self) -> None:
            root = os.fsencode(self.watch.path)

            def refused(path: bytes, exc: OSError) -> None:
                if path != root and exc.errno in LIMIT_ERRORS:
                    self.queue_event(WatchFailedEvent(os.fsdecode(path), error=exc.errno or 0))

            guarded: Any = _GuardedFD(self._inotify_fd, self._guard, refused)
            self._inotify = _ReportingWatchGroup(
                guarded, root,
                is_recursive=self.watch.is_recursive,
                event_mask=Mask(self.get_event_mask_from_filter()
                                | InotifyConstants.IN_MOVE_SELF),
                follow_symlink=self.watch.follow_symlink,
                report=self.queue_event)


class ReportingInotifyObserver(InotifyObserver):
    """An InotifyObserver with full move events whose emitters report lost events, refused
    subfolder watches and a lost root watch to the handler. ``guard`` (tests) sees every
    folder before it is watched and may refuse it as the kernel would."""

    def __init__(self, *, timeout: float, guard: WatchGuard | None = None) -> None:
        super().__init__(timeout=timeout, generate_full_events=True)
        self._emitter_class = _ReportingEmitter
        self._emitter_kwargs["guard"] = guard


def reporting_inotify_observer(timeout: float, guard: WatchGuard | None = None) -> Any:
    """A :class:`ReportingInotifyObserver`, or watchdog's plain one where its internals differ
    (then lost events and refused subfolders wait for the periodic rescan)."""
    if not HOOKS:  # pragma: no cover - depends on the installed watchdog
        return InotifyObserver(timeout=timeout, generate_full_events=True)
    return ReportingInotifyObserver(timeout=timeout, guard=guard)
