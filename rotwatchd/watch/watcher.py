"""Watching inboxes: watchdog observers feeding the :class:`Settler`, plus full rescans.

inotify by default (one observer per inbox, full move events so a rename into the inbox is
recognised), polling (``rotwatchd.watch.polling``, every ``watch.poll_interval``) when the inbox
asks for it or when inotify cannot be set up (watch or instance limits): that is logged once, naming
the limit, and the inbox keeps working.

Troubles an observer reports are repaired by the :class:`Rescanner` thread, never in the
observer's own thread: lost events (queue overflow) rescan that inbox at once; a subfolder
refused by the watch limit switches the inbox to polling; an inbox that disappears (removed,
unmounted) is shown as missing and watched again, with a rescan, once it is back.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from rotwatchd.config import InboxConfig
from rotwatchd.output.inboxfile import is_ignored as is_ignored
from rotwatchd.threads.stoppable import StoppableThread
from rotwatchd.watch.inotify import (
    EventsLostEvent,
    WatchFailedEvent,
    WatchGoneEvent,
    limit_hint,
    reporting_inotify_observer,
)
from rotwatchd.watch.polling import PollingWatch
from rotwatchd.watch.settle import Settler

log = logging.getLogger(__name__)

#: inotify observers block on the kernel; this only bounds their internal dispatch wait.
INOTIFY_DISPATCH_TIMEOUT = 3600.0
POLL_INTERVAL = 1.0
#: How often a missing inbox is looked for (only while one is missing).
REARM_INTERVAL = 1.0


class Observer(Protocol):
    """What we need of a watchdog observer (lets tests inject a failing one)."""

    def schedule(self, event_handler: Any, path: str, *, recursive: bool = ...) -> Any: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = ...) -> None: ...


ObserverFactory = Callable[[bool], Observer]  # polling -> observer


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def make_observer(polling: bool, interval: float = POLL_INTERVAL) -> Observer:
    """The real observer: watchdog's inotify one (reporting lost events, refused subfolders
    and a lost inbox, see ``inotify_watch``), or polling every ``interval`` seconds."""
    if polling:
        return PollingWatch(interval)
    observer: Observer = reporting_inotify_observer(INOTIFY_DISPATCH_TIMEOUT)
    return observer


def _has_data(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_size > 0 or stat.S_ISLNK(st.st_mode)


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into Settler notes. Runs in the observer's thread."""

    def __init__(self, watcher: InboxWatcher) -> None:
        self._w = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        """Every event goes to :meth:`on_any_event` (ours have no ``on_<type>`` method)."""
        self.on_any_event(event)

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # an odd event must never kill the observer thread
            log.exception("error handling %r", event)

    def _trouble(self, event: FileSystemEvent, src: Path | None) -> bool:
        """Handle what concerns the watch itself; True when ``event`` was such a thing."""
        w = self._w
        if isinstance(event, EventsLostEvent):
            w.need("rescan", "inotify queue overflowed, events were lost (if this repeats, "
                   "raise fs.inotify.max_queued_events)")
        elif isinstance(event, WatchFailedEvent):
            w.need("poll", f"{src} could not be watched: "
                   f"{limit_hint(event.error) or os.strerror(event.error)}")
        elif isinstance(event, WatchGoneEvent) or (
                isinstance(event, DirDeletedEvent | DirMovedEvent) and src == w.inbox.path):
            w.settler.forget_under(w.inbox.path)
            w.need("rearm", "the inbox folder itself was removed, moved or unmounted")
        else:
            return False
        return True

    def _dispatch(self, event: FileSystemEvent) -> None:
        w = self._w
        src = Path(os.fsdecode(event.src_path)) if event.src_path else None
        if self._trouble(event, src):
            return
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            dest = Path(os.fsdecode(event.dest_path)) if event.dest_path else None
            if src is not None and event.is_directory:
                w.settler.forget_under(src)
            elif src is not None:
                w.settler.forget(src)
            if dest is not None and w.wants(dest):
                if event.is_directory:
                    w.scan(dest, confirmed=True)  # a folder moved in holds complete files
                else:
                    w.note(dest, armed=True, confirmed=True)
        elif src is None or not w.wants(src):
            return
        elif isinstance(event, FileClosedEvent):
            w.note(src, armed=True, confirmed=True)
        elif isinstance(event, FileCreatedEvent):
            # Created files usually get modify + close events next. Some never do: links, and
            # files written before a new subfolder's watch existed (watchdog then synthesises
            # this event). Arm those that already hold data; an empty new file waits for its
            # writer, and any modify event that follows disarms it again.
            w.note(src, armed=w.polling or _has_data(src), scan=True)
        elif isinstance(event, FileModifiedEvent):
            w.note(src, armed=w.polling)
        elif isinstance(event, FileDeletedEvent):
            w.settler.forget(src)
        elif isinstance(event, DirDeletedEvent):
            w.settler.forget_under(src)
        elif isinstance(event, DirCreatedEvent) and w.inbox.recursive:
            # files written before the new folder's watch existed sent no events to us; arm
            # them (a scan never overrides a file whose own events say it is being written)
            w.scan(src)


class InboxWatcher:
    """Watches one inbox and reports candidate files to ``settler``."""

    def __init__(self, inbox: InboxConfig, settler: Settler, ignore_patterns: tuple[str, ...],
                 *, known: Callable[[Path, os.stat_result], bool] = lambda p, s: False,
                 observer_factory: ObserverFactory | None = None,
                 on_change: Callable[[], None] = lambda: None,
                 poll_interval: float = POLL_INTERVAL) -> None:
        self.inbox = inbox
        self.settler = settler
        self.ignore_patterns = ignore_patterns
        self._known = known
        self.poll_interval = poll_interval
        self._factory = observer_factory or (
            lambda polling: make_observer(polling, poll_interval))
        self._on_change = on_change
        self._observer: Observer | None = None
        self.polling = inbox.polling
        #: why this inbox polls although it asked for inotify (None: it does not, or asked to)
        self.fallback: str | None = None
        self.missing = False
        self.missing_why: str | None = None  # what was found instead of the inbox
        self._mount_point = False  # the inbox was a mount point when its watch was set up
        self._lock = threading.Lock()
        self._needs: dict[str, str] = {}  # repairs asked for by events -> why
        self._request: Callable[[InboxWatcher], None] = lambda watcher: None

    @property
    def state(self) -> str:
        """``missing``, ``polling`` or ``watching`` (inotify), for status."""
        return "missing" if self.missing else "polling" if self.polling else "watching"

    def describe(self) -> dict[str, object]:
        """This inbox for status.json: path, state, polling and, when polling by fallback, why."""
        return {"path": str(self.inbox.path), "state": self.state, "polling": self.polling,
                "fallback": self.fallback, "missing": self.missing_why if self.missing else None}

    def set_maintainer(self, request: Callable[[InboxWatcher], None]) -> None:
        """``request(self)`` is called (from any thread) when this watcher needs
        :meth:`maintain` to run; the Rescanner installs itself here."""
        self._request = request
        if self._needs:
            request(self)

    def need(self, repair: str, why: str) -> None:
        """Ask for ``repair`` (``rescan``, ``poll`` or ``rearm``) by the maintaining thread.
        Safe from observer threads: nothing is done here."""
        with self._lock:
            self._needs.setdefault(repair, why)
        self._request(self)

    def wants(self, path: Path) -> bool:
        """Inside this inbox (directly unless recursive) and not a temp/hidden name."""
        try:
            relative = path.relative_to(self.inbox.path)
        except ValueError:
            return False
        if not relative.parts or (not self.inbox.recursive and len(relative.parts) > 1):
            return False
        return not is_ignored(relative, self.ignore_patterns)

    def note(self, path: Path, *, armed: bool, scan: bool = False,
             confirmed: bool = False) -> None:
        self.settler.note(path, self.inbox, armed=armed, scan=scan, confirmed=confirmed)

    def start(self) -> None:
        """Start watching; falls back to polling (logged) when inotify cannot be set up. A
        missing inbox is logged and watched for (see :meth:`maintain`)."""
        if not self.inbox.path.is_dir():
            self.need("rearm", "the inbox folder does not exist")
            return
        try:
            self._observer = self._start_observer(self.polling)
        except FileNotFoundError:
            self.need("rearm", "the inbox folder vanished while its watch was set up")
            return
        except OSError as exc:
            if self.polling:
                raise
            hint = limit_hint(exc.errno or 0) or exc.strerror or str(exc)
            log.warning("inbox %s: cannot use inotify: %s; falling back to polling every %gs",
                        self.inbox.path, hint, self.poll_interval)
            self.polling, self.fallback = True, hint
            self._observer = self._start_observer(True)
        self._mount_point = _device(self.inbox.path) != _device(self.inbox.path.parent)
        log.info("watching %s (%s%s)", self.inbox.path, "polling" if self.polling else "inotify",
                 ", recursive" if self.inbox.recursive else "")

    def maintain(self) -> float | None:
        """Carry out the repairs events asked for; call from the maintaining thread only.

        Returns seconds until it wants to run again (the inbox is missing), else None.
        """
        with self._lock:
            needs, self._needs = self._needs, {}
        if "rearm" in needs or self.missing or self._observer is None:
            if not self._rearm(needs.get("rearm", "")):
                return REARM_INTERVAL
            needs.setdefault("rescan", "")
        if "poll" in needs and not self.polling:
            self._fall_back_to_polling(needs["poll"])
            needs.setdefault("rescan", "")
        if "rescan" in needs:
            if needs["rescan"]:
                log.warning("inbox %s: %s; rescanning it now", self.inbox.path, needs["rescan"])
            found = self.scan(authoritative=True)
            log.info("rescan of %s: %d file(s) to look at", self.inbox.path, found)
        return None

    def _absent(self) -> str | None:
        """Why the inbox cannot be watched now, or None when it can."""
        path = self.inbox.path
        if not path.is_dir():
            return "not found"
        if self._mount_point and _device(path) == _device(path.parent):
            return "its file system is not mounted"
        return None

    def _rearm(self, why: str) -> bool:
        """Watch the inbox again if it exists; True when it is watched."""
        absent = self._absent()
        if absent is not None:
            if not self.missing:
                self.stop()
                self.missing, self.missing_why = True, absent
                log.error("inbox %s is missing (%s: %s); its files wait until it is back, "
                          "then it is watched and rescanned again", self.inbox.path,
                          why or "found by a rescan", absent)
                self._on_change()
            return False
        self.stop()
        was_missing, self.missing = self.missing, False
        mount_point = self._mount_point
        self.start()
        self._mount_point = self._mount_point or mount_point
        if self.missing or self._observer is None:
            return False  # gone again meanwhile
        if was_missing:
            log.warning("inbox %s is back: watching it again", self.inbox.path)
        elif why:
            log.warning("inbox %s: %s; watching it again", self.inbox.path, why)
        self._on_change()
        return True

    def _fall_back_to_polling(self, why: str) -> None:
        log.warning("inbox %s: %s; polling this inbox every %gs instead of inotify",
                    self.inbox.path, why, self.poll_interval)
        self.stop()
        self.polling, self.fallback = True, why
        self._on_change()
        self._observer = self._start_observer(True)  # OSError: maintain() re-arms it later

    def _start_observer(self, polling: bool) -> Observer:
        observer = self._factory(polling)
        try:
            observer.schedule(_Handler(self), str(self.inbox.path), recursive=self.inbox.recursive)
            observer.start()
        except BaseException:
            observer.stop()
            raise
        return observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None

    def scan(self, folder: Path | None = None, *, confirmed: bool = False,
             authoritative: bool = False) -> int:
        """Walk ``folder`` (default: the inbox) and note every wanted file not already handled.

        ``authoritative`` (after lost events): also arm files whose last event said they were
        being written, as their close event may be among the lost ones (a file that turns out
        unfinished is held, never quarantined early). Returns how many files were noted.
        Never follows symlinked folders.
        """
        root = folder or self.inbox.path
        noted = 0
        if not self.inbox.path.is_dir():  # removed without an event we saw (unmounted...)
            self.need("rearm", "the inbox folder is gone")
            return 0
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            if not self.inbox.recursive and here != self.inbox.path:
                dirnames.clear()
                continue
            dirnames[:] = [d for d in dirnames if self.wants(here / d)]
            for name in filenames:
                path = here / name
                if not self.wants(path):
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if self._known(path, st):
                    continue
                self.note(path, armed=True, scan=not authoritative, confirmed=confirmed)
                noted += 1
        return noted


class Rescanner(StoppableThread):
    """Rescans every watcher now and then every ``interval`` seconds (0 = never again), and
    maintains watchers whenever they ask (lost events, watch limit, a missing inbox): the one
    thread that restarts observers. Sleeps without a timeout when nothing is due."""

    def __init__(self, watchers: list[InboxWatcher], interval: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("rotwatchd-rescan")
        self._watchers = watchers
        self._interval = interval
        self._clock = clock
        self._requested: list[InboxWatcher] = []
        self._recheck: dict[int, float] = {}  # id(watcher) -> when maintain() wants to run
        self.passes = 0  # completed full rescans (status, tests)
        for watcher in watchers:
            watcher.set_maintainer(self.request)

    def request(self, watcher: InboxWatcher) -> None:
        """Run ``watcher.maintain()`` soon (from any thread)."""
        with self._cond:
            if watcher not in self._requested:
                self._requested.append(watcher)
            self._cond.notify()

    def run(self) -> None:
        next_pass: float | None = self._clock()  # the startup rescan
        while True:
            with self._cond:
                while not self._stopping and not self._requested and not self._due(next_pass):
                    self._cond.wait(self._timeout(next_pass))
                if self._stopping:
                    return
                now = self._clock()
                due = [w for w in self._watchers if self._recheck.get(id(w), now + 1) <= now]
                todo = self._requested + [w for w in due if w not in self._requested]
                self._requested = []
            for watcher in todo:
                self._maintain(watcher)
            if next_pass is not None and self._clock() >= next_pass:
                self._full_pass()
                next_pass = self._clock() + self._interval if self._interval else None

    def _due(self, next_pass: float | None) -> bool:
        """Caller holds the lock."""
        times = [*self._recheck.values(), *([] if next_pass is None else [next_pass])]
        return bool(times) and min(times) <= self._clock()

    def _timeout(self, next_pass: float | None) -> float | None:
        """Caller holds the lock. None: nothing is due, wait for a request."""
        times = [*self._recheck.values(), *([] if next_pass is None else [next_pass])]
        return max(min(times) - self._clock(), 0.0) if times else None

    def _maintain(self, watcher: InboxWatcher) -> None:
        try:
            again = watcher.maintain()
        except OSError as exc:
            log.error("inbox %s: cannot repair its watch: %s", watcher.inbox.path, exc)
            again = REARM_INTERVAL
        with self._cond:
            if again is None:
                self._recheck.pop(id(watcher), None)
            else:
                self._recheck[id(watcher)] = self._clock() + again

    def _full_pass(self) -> None:
        for watcher in self._watchers:
            if self._stopping:
                return
            if watcher.missing:
                continue  # looked for by maintain(); rescanned when it is back
            try:
                found = watcher.scan()
            except OSError as exc:
                log.error("rescan of %s failed: %s", watcher.inbox.path, exc)
                continue
            if found:
                log.info("rescan of %s: %d file(s) to look at", watcher.inbox.path, found)
        self.passes += 1
