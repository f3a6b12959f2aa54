"""Watcher and settler units: what is wanted, when a file counts as complete, queue pressure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotwatchd.config import InboxConfig
from rotwatchd.config.schema import DEFAULT_IGNORE
from rotwatchd.watch.settle import CLOSED_SETTLE, WRITING_TIMEOUT, Settler
from rotwatchd.watch.watcher import InboxWatcher, is_ignored
from rotwatchd.watch.workqueue import WorkItem, WorkQueue


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


class FakeClock:
    """Monotonic time the test moves by hand (the settler's injected clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked() -> tuple[Settler, WorkQueue, FakeClock]:
    """A settler driven by settle_due() and a fake clock: no thread, no timing."""
    clock = FakeClock()
    queue = WorkQueue(maxsize=2)
    return Settler(queue, quiet_period=2.0, clock=clock), queue, clock


def test_armed_file_is_queued_only_after_a_quiet_period(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    settler, queue, clock = clocked
    inbox = _inbox(tmp_path)
    path = inbox.path / "a.jpg"
    path.write_bytes(b"first")
    settler.note(path, inbox, armed=True)
    clock.now += 1.9
    settler.settle_due()
    assert queue.depth == 0 and settler.is_pending(path)
    clock.now += 0.1
    settler.settle_due()
    assert queue.depth == 1 and settler.pending() == 0


def test_changing_file_waits_until_stable(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    settler, queue, clock = clocked
    inbox = _inbox(tmp_path)
    path = inbox.path / "grow.jpg"
    path.write_bytes(b"x")
    settler.note(path, inbox, armed=True)
    for i in range(3):  # grows between checks, without any new event
        with open(path, "ab") as handle:
            handle.write(b"more" * (i + 1))
        clock.now += 2.0
        settler.settle_due()
        assert queue.depth == 0, i
    clock.now += 2.0  # one full quiet period without change
    settler.settle_due()
    assert queue.depth == 1


def test_file_being_written_waits_for_its_close(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    settler, queue, clock = clocked
    inbox = _inbox(tmp_path)
    path = inbox.path / "open.jpg"
    path.write_bytes(b"partial")
    settler.note(path, inbox, armed=False)  # created/modified, no close yet
    clock.now += 30
    settler.note(path, inbox, armed=True, scan=True)  # a rescan may not arm it
    clock.now += 20
    settler.settle_due()
    assert queue.depth == 0
    settler.note(path, inbox, armed=True)  # the close-after-write event
    clock.now += 2.0
    settler.settle_due()
    assert queue.depth == 1


def test_silent_writer_is_armed_after_the_writing_timeout(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    settler, queue, clock = clocked
    inbox = _inbox(tmp_path)
    path = inbox.path / "hardlinked.jpg"
    path.write_bytes(b"complete, but no close event ever comes")
    settler.note(path, inbox, armed=False)
    clock.now += WRITING_TIMEOUT - 1
    settler.settle_due()
    assert queue.depth == 0
    clock.now += 1
    settler.settle_due()  # silence long enough: armed, one quiet period still required
    assert queue.depth == 0
    clock.now += 2.0
    settler.settle_due()
    assert queue.depth == 1


def test_vanished_file_is_forgotten(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    settler, queue, clock = clocked
    inbox = _inbox(tmp_path)
    path = inbox.path / "gone.jpg"
    path.write_bytes(b"x")
    settler.note(path, inbox, armed=True)
    path.unlink()
    clock.now += 2.0
    settler.settle_due()
    assert queue.depth == 0 and settler.pending() == 0


def test_full_queue_leaves_files_pending_until_space(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    settler, queue, clock = clocked  # capacity 2
    inbox = _inbox(tmp_path)
    paths = []
    for i in range(5):
        paths.append(inbox.path / f"{i}.jpg")
        paths[-1].write_bytes(b"data%d" % i)
        settler.note(paths[-1], inbox, armed=True)
    clock.now += 2.0
    settler.settle_due()
    assert queue.depth == 2 and settler.pending() == 3  # kept, not dropped
    got: list[WorkItem] = []
    while len(got) < 5:
        item = queue.take(timeout=1)  # taking one makes room: the settler is told
        assert item is not None
        got.append(item)
        queue.done(item)
        settler.settle_due()
    assert sorted(i.path for i in got) == sorted(paths)
    assert settler.pending() == 0


def test_settler_thread_queues_a_settled_file(
        tmp_path: Path, settler_and_queue: tuple[Settler, WorkQueue]) -> None:
    settler, queue = settler_and_queue  # real clock, real thread, 0.15 s quiet period
    inbox = _inbox(tmp_path)
    path = inbox.path / "t.jpg"
    path.write_bytes(b"x")
    settler.note(path, inbox, armed=True)
    item = queue.take(timeout=10)
    assert item is not None and item.path == path
    queue.done(item)


def test_queue_defers_a_path_that_is_running(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    queue = WorkQueue(maxsize=4)
    first = WorkItem(inbox.path / "a.jpg", inbox)
    assert queue.offer(first)
    taken = queue.take(timeout=1)
    assert taken is first
    assert queue.offer(WorkItem(first.path, inbox))  # accepted, but not runnable yet
    assert queue.take(timeout=0.1) is None
    assert queue.holds(first.path) and not queue.holds(inbox.path / "b.jpg")
    queue.done(taken)
    again = queue.take(timeout=1)
    assert again is not None and again.path == first.path
    assert queue.holds(first.path)  # running again
    queue.done(again)
    assert queue.is_idle() and not queue.holds(first.path)


def test_closed_file_settles_at_once_not_after_the_quiet_period(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    """A close-after-write (or rename in) proves the file complete: it is queued after
    CLOSED_SETTLE; a file only found by a scan still waits the whole quiet period."""
    settler, queue, clock = clocked
    inbox = _inbox(tmp_path)
    closed, found = inbox.path / "closed.jpg", inbox.path / "found.jpg"
    closed.write_bytes(b"done")
    found.write_bytes(b"done")
    settler.note(closed, inbox, armed=True, confirmed=True)
    settler.note(found, inbox, armed=True, scan=True)
    clock.now += CLOSED_SETTLE
    settler.settle_due()
    assert queue.depth == 1 and not settler.is_pending(closed) and settler.is_pending(found)


def test_closed_file_that_changes_meanwhile_waits_a_quiet_period(
        tmp_path: Path, clocked: tuple[Settler, WorkQueue, FakeClock]) -> None:
    settler, queue, clock = clocked
    inbox = _inbox(tmp_path)
    path = inbox.path / "reopened.jpg"
    path.write_bytes(b"first")
    settler.note(path, inbox, armed=True, confirmed=True)
    path.write_bytes(b"first and more")  # reopened by its writer, no new close seen yet
    clock.now += CLOSED_SETTLE
    settler.settle_due()
    assert queue.depth == 0 and settler.is_pending(path)
    clock.now += settler.quiet_period
    settler.settle_due()
    assert queue.depth == 1
