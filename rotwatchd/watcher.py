"""Watching inboxes: watchdog observers feeding the :class:`Settler`, plus full rescans.

inotify by default (one observer per inbox, full move events so a rename into the inbox is
recognised), polling when the inbox asks for it or when inotify cannot be set up (watch or
instance limits): that is logged once, naming the limit, and the inbox keeps working.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable
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
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from rotwatchd.config import InboxConfig
from rotwatchd.settle import Settler

log = logging.getLogger(__name__)

#: inotify observers block on the kernel; this only bounds their internal dispatch wait.
INOTIFY_DISPATCH_TIMEOUT = 3600.0
POLL_INTERVAL = 1.0

_LIMIT_HINTS = {
    errno.ENOSPC: "inotify watch limit reached (raise fs.inotify.max_user_watches)",
    errno.EMFILE: "inotify instance limit reached (raise fs.inotify.max_user_instances)",
    errno.ENOMEM: "kernel refused memory for inotify watches",
}


class Observer(Protocol):
    """What we need of a watchdog observer (lets tests inject a failing one)."""

    def schedule(self, event_handler: Any, path: str, *, recursive: bool = ...) -> Any: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = ...) -> None: ...


ObserverFactory = Callable[[bool], Observer]  # polling -> observer


def make_observer(polling: bool) -> Observer:
    """The real watchdog observer: inotify, or polling every ``POLL_INTERVAL`` seconds."""
    if polling:
        return PollingObserver(timeout=POLL_INTERVAL)
    return InotifyObserver(timeout=INOTIFY_DISPATCH_TIMEOUT, generate_full_events=True)


def is_ignored(relative: Path, patterns: Iterable[str]) -> bool:
    """True when any component of ``relative`` matches an ignore glob (temp/hidden names)."""
    return any(fnmatch.fnmatchcase(part, glob) for part in relative.parts for glob in patterns)


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

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # an odd event must never kill the observer thread
            log.exception("error handling %r", event)

    def _dispatch(self, event: FileSystemEvent) -> None:
        w = self._w
        src = Path(os.fsdecode(event.src_path)) if event.src_path else None
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
                 observer_factory: ObserverFactory = make_observer) -> None:
        self.inbox = inbox
        self.settler = settler
        self.ignore_patterns = ignore_patterns
        self._known = known
        self._factory = observer_factory
        self._observer: Observer | None = None
        self.polling = inbox.polling

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
        """Start watching; falls back to polling (logged) when inotify cannot be set up."""
        try:
            self._observer = self._start_observer(self.polling)
        except OSError as exc:
            if self.polling:
                raise
            hint = _LIMIT_HINTS.get(exc.errno or 0, exc.strerror or str(exc))
            log.warning("inbox %s: cannot use inotify: %s; falling back to polling every %.0fs",
                        self.inbox.path, hint, POLL_INTERVAL)
            self.polling = True
            self._observer = self._start_observer(True)
        log.info("watching %s (%s%s)", self.inbox.path, "polling" if self.polling else "inotify",
                 ", recursive" if self.inbox.recursive else "")

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

    def scan(self, folder: Path | None = None, *, confirmed: bool = False) -> int:
        """Walk ``folder`` (default: the inbox) and note every wanted file not already handled.

        Returns how many files were noted. Never follows symlinked folders.
        """
        root = folder or self.inbox.path
        noted = 0
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
                self.note(path, armed=True, scan=True, confirmed=confirmed)
                noted += 1
        return noted


class Rescanner(threading.Thread):
    """Rescans every watcher now and then every ``interval`` seconds (0 = never again)."""

    def __init__(self, watchers: list[InboxWatcher], interval: float) -> None:
        super().__init__(name="rotwatchd-rescan", daemon=True)
        self._watchers = watchers
        self._interval = interval
        self._stop_event = threading.Event()
        self.passes = 0  # completed full rescans (status, tests)

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while True:
            for watcher in self._watchers:
                if self._stop_event.is_set():
                    return
                try:
                    found = watcher.scan()
                except OSError as exc:
                    log.error("rescan of %s failed: %s", watcher.inbox.path, exc)
                    continue
                if found:
                    log.info("rescan of %s: %d file(s) to look at", watcher.inbox.path, found)
            self.passes += 1
            if self._stop_event.wait(self._interval or None):
                return
