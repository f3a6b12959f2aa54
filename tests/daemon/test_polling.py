"""The polling observer: what it reports, and an idle cost that does not grow with the files
already in the inbox (counted through its injected ``stat``)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import fast_config, make_photo
from watchdog.events import FileSystemEvent

from rotwatchd.watch.polling import PollingWatch


class Recorder:
    def __init__(self) -> None:
        self.events: list[FileSystemEvent] = []

    def dispatch(self, event: FileSystemEvent) -> None:
        self.events.append(event)

    def take(self) -> list[tuple[str, str]]:
        out = [(type(e).__name__, os.path.basename(os.fsdecode(e.src_path)))
               for e in self.events]
        self.events.clear()
        return out


class CountingStat:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, path: str) -> os.stat_result:
        self.calls[path] += 1
        return os.stat(path, follow_symlinks=False)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _age(folder: Path) -> None:
    """Give a folder an mtime an hour old, as one whose last change is long past."""
    for path in (folder, *[p for p in folder.rglob("*") if p.is_dir()]):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))


def _watch(inbox: Path, stat: CountingStat | None = None,
           clock: Clock | None = None) -> tuple[PollingWatch, Recorder]:
    kwargs: dict[str, Any] = {}
    if stat is not None:
        kwargs["stat"] = stat
    if clock is not None:
        kwargs["clock"] = clock
    watch, recorder = PollingWatch(1.0, hot_for=10.0, **kwargs), Recorder()
    watch.schedule(recorder, str(inbox), recursive=True)
    return watch, recorder


def test_idle_cost_does_not_grow_with_done_files(tmp_path: Path) -> None:
    """Each pass stats the folders only, whether 10 or 1,000 finished files lie in them."""
    per_pass = []
    for count in (10, 1000):
        inbox = tmp_path / f"inbox{count}"
        (inbox / "sub").mkdir(parents=True)
        for i in range(count):
            (inbox / ("sub" if i % 2 else "") / f"done{i}.jpg").write_bytes(b"x")
        _age(inbox)
        stat = CountingStat()
        watch, recorder = _watch(inbox, stat)
        stat.calls.clear()
        for _ in range(3):
            watch.poll()
        assert recorder.take() == []
        assert set(stat.calls) == {str(inbox), str(inbox / "sub")}
        per_pass.append(sum(stat.calls.values()) / 3)
    assert per_pass[0] == per_pass[1] == 2


def test_new_file_is_reported_followed_while_hot_then_left_alone(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    stat, clock = CountingStat(), Clock()
    watch, recorder = _watch(inbox, stat, clock)
    new = inbox / "new.jpg"
    new.write_bytes(b"part")
    watch.poll()
    assert recorder.take() == [("FileCreatedEvent", "new.jpg")]
    with open(new, "ab") as handle:  # its writer goes on: same name, same inode
        handle.write(b" and the rest")
    watch.poll()
    assert recorder.take() == [("FileModifiedEvent", "new.jpg")]
    clock.now += 10.0  # quiet for hot_for: no longer stat'ed
    watch.poll()
    _age(inbox)
    stat.calls.clear()
    watch.poll()
    watch.poll()
    assert str(new) not in stat.calls and recorder.take() == []


def test_removed_replaced_and_new_folders_are_reported(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jpg").write_bytes(b"a")
    (inbox / "b.jpg").write_bytes(b"b")
    watch, recorder = _watch(inbox)
    (inbox / "a.jpg").unlink()
    (inbox / ".b.tmp").write_bytes(b"new b")  # b replaced by another file, renamed over it
    os.replace(inbox / ".b.tmp", inbox / "b.jpg")
    (inbox / "trip" / "deep").mkdir(parents=True)
    watch.poll()
    kinds = set(recorder.take())
    assert {("FileDeletedEvent", "a.jpg"), ("FileCreatedEvent", "b.jpg"),
            ("DirCreatedEvent", "trip")} <= kinds
    assert ("FileCreatedEvent", "a.jpg") not in kinds
    (inbox / "trip" / "deep" / "c.jpg").write_bytes(b"c")
    watch.poll()
    assert recorder.take() == [("FileCreatedEvent", "c.jpg")]


def test_polled_inbox_is_processed_by_the_daemon(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, inboxes=[{"path": "inbox", "output": "outbox",
                                             "polling": True}],
                         watch={"quiet_period": 0.1, "poll_interval": 0.05})
    daemon, results = daemon_factory(config)
    assert daemon.watchers[0].state == "polling"
    make_photo(config.inboxes[0].path / "polled.jpg", correction=90)
    (result,) = results.wait_count(1)
    assert result.outcome == "done"


def test_a_folder_readable_only_later_announces_no_old_files(tmp_path: Path) -> None:
    """A folder that could not be listed when the watch began is recorded quietly once it
    can be (its files are the rescan's, which knows the finished ones), then watched."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.jpg").write_bytes(b"done long ago")
    refuse = [True]

    def scandir(path: str) -> Any:
        if refuse[0]:
            raise PermissionError(13, "denied", path)
        return os.scandir(path)

    watch, recorder = PollingWatch(1.0, scandir=scandir), Recorder()
    watch.schedule(recorder, str(inbox), recursive=True)
    refuse[0] = False
    watch.poll()
    assert recorder.take() == []
    (inbox / "new.jpg").write_bytes(b"new")
    watch.poll()
    assert recorder.take() == [("FileCreatedEvent", "new.jpg")]
