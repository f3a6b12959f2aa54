"""Watching an inbox without inotify (NFS, SMB, FUSE): a poll whose idle cost does not grow
with the files already there.

watchdog's PollingObserver stats every file of the tree on every pass: 10,000 finished photos
cost seconds of CPU a minute while nothing happens. :class:`PollingWatch` instead stats each
*folder* once a pass and lists a folder again only when it changed (its mtime, ctime or inode:
a name was added, removed or renamed) or was listed too soon after its last change to trust
the timestamp's resolution. A file is stat'ed on every pass only while it is *hot*: new, or
changed within the last ``hot_for`` seconds, so that a writer's progress reaches the settler as
modify events; after that it costs nothing until its name changes. A file rewritten in place
long after it went quiet, or deleted and written again under its name between two passes with
the same inode number, is found by the periodic rescan (``watch.rescan_interval``).

Events are watchdog's own classes, dispatched to the handler from the polling thread, so the
watcher treats them like those of watchdog's observers.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileSystemEvent,
)

from rotwatchd.threads.stoppable import StoppableThread

#: A folder listed less than this long after its mtime is listed again on the next pass: a
#: name added within the same timestamp tick (coarse on some network file systems) would
#: otherwise go unseen.
TIMESTAMP_SLACK_NS = 2_000_000_000
#: How long a new or changed file is stat'ed on every pass (its writer may still be at it).
HOT_FOR = 60.0

Stat = Callable[[str], os.stat_result]
ScanDir = Callable[[str], AbstractContextManager[Iterator[os.DirEntry[str]]]]


def _stat(path: str) -> os.stat_result:
    return os.stat(path, follow_symlinks=False)


@dataclass
class _Folder:
    signature: tuple[int, int, int] | None = None  # (mtime_ns, ctime_ns, inode) when listed
    listed_ns: int = 0  # wall-clock time of that listing
    names: dict[str, tuple[int, bool]] = field(default_factory=dict)  # name -> (inode, dir)


@dataclass
class _Hot:
    signature: tuple[int, int]  # (size, mtime_ns)
    changed: float  # monotonic time of the last change seen


class PollingWatch(StoppableThread):
    """An observer (schedule, start, stop, join) polling one folder tree every ``interval``
    seconds. ``stat``, ``scandir`` and ``clock`` are seams for tests (count the stat calls)."""

    def __init__(self, interval: float, *, stat: Stat = _stat, scandir: ScanDir = os.scandir,
                 clock: Callable[[], float] = time.monotonic, hot_for: float = HOT_FOR) -> None:
        super().__init__("rotwatchd-poll")
        self.interval = interval
        self._stat = stat
        self._scandir = scandir
        self._clock = clock
        self._hot_for = hot_for
        self._handler: Any = None
        self._root = ""
        self._recursive = True
        self._folders: dict[str, _Folder] = {}
        self._hot: dict[str, _Hot] = {}
        self.passes = 0

    # --- the observer interface the watcher uses -------------------------------------------
    def schedule(self, event_handler: Any, path: str, *, recursive: bool = False) -> None:
        """Watch ``path``; what is there now is only recorded (the startup rescan handles it).
        Raises OSError when ``path`` cannot be listed."""
        self._handler, self._root, self._recursive = event_handler, os.fspath(path), recursive
        self._folders = {}
        self._add_folder(self._root, announce=False)
        if self._root not in self._folders:
            raise FileNotFoundError(2, "cannot list the inbox", self._root)


    def run(self) -> None:
        while True:
            with self._cond:
                if not self._stopping:
                    self._cond.wait(self.interval)
                if self._stopping:
                    return
            self.poll()

    # --- one pass --------------------------------------------------------------------------
    def poll(self) -> None:
        """One pass: changed folders listed again, hot files stat'ed, events dispatched.
        The thread calls this every ``interval``; tests call it directly."""
        for path in list(self._folders):
            if path in self._folders:  # not dropped with a removed parent meanwhile
                self._look_at_folder(path)
        now = self._clock()
        for path, hot in list(self._hot.items()):
            try:
                st = self._stat(path)
            except OSError:
                continue  # gone: its folder's listing says so
            signature = (st.st_size, st.st_mtime_ns)
            if signature != hot.signature:
                hot.signature, hot.changed = signature, now
                self._emit(FileModifiedEvent(path))
            elif now - hot.changed >= self._hot_for:
                del self._hot[path]
        self.passes += 1

    def _look_at_folder(self, path: str) -> None:
        folder = self._folders[path]
        try:
            st = self._stat(path)
        except OSError:
            self._drop_folder(path)
            self._emit(DirDeletedEvent(path))
            return
        signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if (signature == folder.signature
                and folder.listed_ns - st.st_mtime_ns >= TIMESTAMP_SLACK_NS):
            return  # unchanged since a listing made well after its last change
        self._list(path, folder, signature)

    def _list(self, path: str, folder: _Folder, signature: tuple[int, int, int]) -> None:
        if folder.signature is None:  # never listed (unreadable until now): like a new watch,
            self._list_quietly(path, folder, signature)  # its files are the rescan's
            return
        try:
            with self._scandir(path) as entries:
                names = {e.name: (e.inode(), e.is_dir(follow_symlinks=False)) for e in entries}
        except OSError:
            return  # unreadable for now: looked at again next pass
        folder.signature, folder.listed_ns = signature, time.time_ns()
        old, folder.names = folder.names, names
        for name, (inode, is_dir) in names.items():
            before = old.get(name)
            if before == (inode, is_dir):
                continue
            child = os.path.join(path, name)
            if before is not None:  # replaced under the same name
                self._forget(child, before[1])
            if is_dir:
                if self._recursive:
                    self._add_folder(child, announce=True)
            else:
                self._heat(child)
                self._emit(FileCreatedEvent(child))
        for name, (_, is_dir) in old.items():
            if name not in names:
                self._forget(os.path.join(path, name), is_dir)

    def _add_folder(self, path: str, *, announce: bool) -> None:
        folder = _Folder()
        try:
            st = self._stat(path)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        self._folders[path] = folder
        if announce:
            self._emit(DirCreatedEvent(path))  # the watcher scans it for files already inside
        self._list_quietly(path, folder, (st.st_mtime_ns, st.st_ctime_ns, st.st_ino))

    def _list_quietly(self, path: str, folder: _Folder, signature: tuple[int, int, int]) -> None:
        """Record a new folder's names (and its subfolders') without events for its files."""
        try:
            with self._scandir(path) as entries:
                folder.names = {e.name: (e.inode(), e.is_dir(follow_symlinks=False))
                                for e in entries}
        except OSError:
            return
        folder.signature, folder.listed_ns = signature, time.time_ns()
        if self._recursive:
            for name, (_, is_dir) in folder.names.items():
                if is_dir:
                    self._add_folder(os.path.join(path, name), announce=False)

    def _heat(self, path: str) -> None:
        try:
            st = self._stat(path)
        except OSError:
            return
        self._hot[path] = _Hot((st.st_size, st.st_mtime_ns), self._clock())

    def _forget(self, path: str, is_dir: bool) -> None:
        if is_dir:
            self._drop_folder(path)
            self._emit(DirDeletedEvent(path))
        else:
            self._hot.pop(path, None)
            self._emit(FileDeletedEvent(path))

    def _drop_folder(self, path: str) -> None:
        prefix = path + os.sep
        for known in [p for p in self._folders if p == path or p.startswith(prefix)]:
            del self._folders[known]
        for known in [p for p in self._hot if p.startswith(prefix)]:
            del self._hot[known]

    def _emit(self, event: FileSystemEvent) -> None:
        if self._handler is not None:
            self._handler.dispatch(event)
