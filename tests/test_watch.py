"""Watcher and settler units: what is wanted, when a file counts as complete, queue pressure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotwatchd.config import InboxConfig
from rotwatchd.config_schema import DEFAULT_IGNORE
from rotwatchd.settle import Settler
from rotwatchd.watcher import InboxWatcher, is_ignored
from rotwatchd.workqueue import WorkItem, WorkQueue


def _inbox(tmp_path: Path, recursive: bool = True) -> InboxConfig:
    (tmp_path / "in").mkdir(exist_ok=True)
    return InboxConfig(tmp_path / "in", tmp_path / "out", tmp_path / "review", tmp_path / "q",
                       recursive=recursive)


@pytest.fixture
def settler_and_queue() -> Iterator[tuple[Settler, WorkQueue]]:
    queue = WorkQueue(maxsize=2)
    settler = Settler(queue, quiet_period=0.15)
    settler.start()
    yield settler, queue
    settler.stop()
    settler.join()


@pytest.mark.parametrize(("name", "ignored"), [
    ("photo.jpg", False), ("photo.jpg.part", True), ("x.tmp", True), ("x.jpg~", True),
    ("x.crdownload", True), (".syncthing.x.jpg.tmp", True), (".hidden.jpg", True),
    (".stversions/a.jpg", True), ("a/b/c.jpg", False), (".x.jpg.abc.rwtmp", True)])
def test_ignore_patterns(name: str, ignored: bool) -> None:
    assert is_ignored(Path(name), DEFAULT_IGNORE) is ignored


def test_wants_respects_recursion_and_inbox_bounds(tmp_path: Path,
                                                   settler_and_queue: tuple[Settler, WorkQueue]
                                                   ) -> None:
    settler, _ = settler_and_queue
    flat = InboxWatcher(_inbox(tmp_path, recursive=False), settler, DEFAULT_IGNORE)
    assert flat.wants(tmp_path / "in" / "a.jpg")
    assert not flat.wants(tmp_path / "in" / "sub" / "a.jpg")
    assert not flat.wants(tmp_path / "elsewhere.jpg")
    assert not flat.wants(tmp_path / "in")


def test_armed_file_is_queued_only_after_a_quiet_period(
        tmp_path: Path, settler_and_queue: tuple[Settler, WorkQueue]) -> None:
    settler, queue = settler_and_queue
    inbox = _inbox(tmp_path)
    path = inbox.path / "a.jpg"
    path.write_bytes(b"first")
    settler.note(path, inbox, armed=True)
    item = queue.take(timeout=5)
    assert item is not None and item.path == path
    queue.done(item)
    assert settler.pending() == 0


def test_changing_file_waits_until_stable(tmp_path: Path,
                                          settler_and_queue: tuple[Settler, WorkQueue]) -> None:
    settler, queue = settler_and_queue
    inbox = _inbox(tmp_path)
    path = inbox.path / "grow.jpg"
    path.write_bytes(b"x")
    settler.note(path, inbox, armed=True)
    tick = threading.Event()
    for i in range(6):  # keeps growing faster than the quiet period, without new events
        tick.wait(0.05)
        with open(path, "ab") as handle:
            handle.write(b"more" * (i + 1))
        assert queue.depth == 0
    item = queue.take(timeout=5)
    assert item is not None and item.path == path


def test_file_being_written_waits_for_its_close(tmp_path: Path,
                                                settler_and_queue: tuple[Settler, WorkQueue]
                                                ) -> None:
    settler, queue = settler_and_queue
    inbox = _inbox(tmp_path)
    path = inbox.path / "open.jpg"
    path.write_bytes(b"partial")
    settler.note(path, inbox, armed=False)  # created/modified, no close yet
    assert queue.take(timeout=0.6) is None  # several quiet periods pass: still waiting
    settler.note(path, inbox, armed=True, scan=True)  # a rescan may not arm it either
    assert queue.take(timeout=0.4) is None
    settler.note(path, inbox, armed=True)  # the close-after-write event
    item = queue.take(timeout=5)
    assert item is not None and item.path == path


def test_vanished_file_is_forgotten(tmp_path: Path,
                                    settler_and_queue: tuple[Settler, WorkQueue]) -> None:
    settler, queue = settler_and_queue
    inbox = _inbox(tmp_path)
    path = inbox.path / "gone.jpg"
    path.write_bytes(b"x")
    settler.note(path, inbox, armed=True)
    path.unlink()
    assert queue.take(timeout=0.6) is None
    assert settler.pending() == 0


def test_full_queue_leaves_files_pending_until_space(
        tmp_path: Path, settler_and_queue: tuple[Settler, WorkQueue]) -> None:
    settler, queue = settler_and_queue  # capacity 2
    inbox = _inbox(tmp_path)
    paths = []
    for i in range(5):
        paths.append(inbox.path / f"{i}.jpg")
        paths[-1].write_bytes(b"data%d" % i)
        settler.note(paths[-1], inbox, armed=True)
    got: list[WorkItem] = []
    while len(got) < 5:
        item = queue.take(timeout=5)
        assert item is not None
        assert queue.depth <= 2
        got.append(item)
        queue.done(item)
    assert sorted(i.path for i in got) == sorted(paths)
    assert settler.pending() == 0


def test_queue_defers_a_path_that_is_running(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    queue = WorkQueue(maxsize=4)
    first = WorkItem(inbox.path / "a.jpg", inbox)
    assert queue.offer(first)
    taken = queue.take(timeout=1)
    assert taken is first
    assert queue.offer(WorkItem(first.path, inbox))  # accepted, but not runnable yet
    assert queue.take(timeout=0.1) is None
    queue.done(taken)
    again = queue.take(timeout=1)
    assert again is not None and again.path == first.path
    queue.done(again)
    assert queue.is_idle()
