"""The settler under a full queue (no busy loop while it waits for a worker), how promptly a
file settles, what a scan-found file is handed over as, and forgetting a removed folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rotwatchd.config import InboxConfig
from rotwatchd.watch.settle import Settler
from rotwatchd.watch.workqueue import WorkQueue


def _inbox(tmp_path: Path) -> InboxConfig:
    (tmp_path / "in").mkdir(exist_ok=True)
    return InboxConfig(tmp_path / "in", tmp_path / "out", tmp_path / "review", tmp_path / "q")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStat:
    """The filesystem seam: lstat, counting how often the settler looks at a file."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> os.stat_result:
        self.calls += 1
        return os.lstat(path)


def test_a_full_queue_is_not_polled_until_a_worker_makes_room(tmp_path: Path) -> None:
    """On a small device a settler that retried a full queue in a loop would burn a core
    for as long as the workers are busy."""
    clock, stat = Clock(), CountingStat()
    queue = WorkQueue(maxsize=1)
    settler = Settler(queue, quiet_period=2.0, clock=clock, stat=stat)
    inbox = _inbox(tmp_path)
    paths = []
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        paths.append(inbox.path / name)
        paths[-1].write_bytes(name.encode())
        settler.note(paths[-1], inbox, armed=True)
    clock.now += 2.0
    settler.settle_due()
    assert queue.depth == 1 and settler.pending() == 2

    looked = stat.calls
    for _ in range(5):
        clock.now += 10.0
        settler.settle_due()
    assert stat.calls == looked  # full: nothing looked at, nothing offered again

    item = queue.take(timeout=1)  # a worker takes one: room for exactly one more
    assert item is not None
    settler.settle_due()
    assert queue.depth == 1 and settler.pending() == 1
    queue.done(item)


def test_files_settle_after_their_quiet_period_not_a_fixed_second(tmp_path: Path) -> None:
    """Ten files one after another with a 10 ms quiet period take well under a second each
    (the thread sleeps until the earliest deadline, however short)."""
    queue = WorkQueue(maxsize=4)
    settler = Settler(queue, quiet_period=0.01)
    settler.start()
    inbox = _inbox(tmp_path)
    try:
        started = time.monotonic()
        for i in range(10):
            path = inbox.path / f"{i}.jpg"
            path.write_bytes(b"x")
            settler.note(path, inbox, armed=True)
            item = queue.take(timeout=5)  # each takes milliseconds; 5 s is generous
            assert item is not None and item.path == path
            queue.done(item)
        assert time.monotonic() - started < 5.0
    finally:
        settler.stop()
        settler.join()


def test_only_a_close_or_rename_event_confirms_a_file(tmp_path: Path) -> None:
    """A file only found by a scan (or a polling change) may still be being written: it is
    handed over unconfirmed, so a broken-looking one waits longer before quarantine."""
    clock = Clock()
    queue = WorkQueue(maxsize=8)
    settler = Settler(queue, quiet_period=1.0, clock=clock)
    inbox = _inbox(tmp_path)
    for name in ("scanned.jpg", "polled.jpg", "closed.jpg"):
        (inbox.path / name).write_bytes(b"x")
    settler.note(inbox.path / "scanned.jpg", inbox, armed=True, scan=True)
    settler.note(inbox.path / "polled.jpg", inbox, armed=True)
    settler.note(inbox.path / "closed.jpg", inbox, armed=True, confirmed=True)
    clock.now += 1.0
    settler.settle_due()
    confirmed = {}
    while queue.depth:
        item = queue.take(timeout=1)
        assert item is not None
        confirmed[item.path.name] = item.confirmed
        queue.done(item)
    assert confirmed == {"scanned.jpg": False, "polled.jpg": False, "closed.jpg": True}


def test_a_removed_folder_s_files_stop_counting_as_pending(tmp_path: Path) -> None:
    clock = Clock()
    settler = Settler(WorkQueue(maxsize=8), quiet_period=1.0, clock=clock)
    inbox = _inbox(tmp_path)
    (inbox.path / "trip").mkdir()
    for path in (inbox.path / "trip" / "a.jpg", inbox.path / "trip" / "b.jpg",
                 inbox.path / "tripod.jpg"):
        path.write_bytes(b"x")
        settler.note(path, inbox, armed=False)
    settler.forget_under(inbox.path / "trip")
    assert settler.pending() == 1 and settler.is_pending(inbox.path / "tripod.jpg")


def test_a_file_event_wakes_a_sleeping_daemon_at_once(tmp_path: Path) -> None:
    """The power manager learns of a new photo from the first event, not after the quiet
    period: an asleep daemon starts waking while the file is still being written."""
    clock, seen = Clock(), []
    settler = Settler(WorkQueue(maxsize=4), quiet_period=2.0, clock=clock,
                      on_activity=seen.append)
    inbox = _inbox(tmp_path)
    (inbox.path / "a.jpg").write_bytes(b"x")
    settler.note(inbox.path / "a.jpg", inbox, armed=False)
    assert seen == [1000.0]


def test_a_worker_making_room_wakes_the_settler(tmp_path: Path) -> None:
    """With the queue full the settler sleeps without a timeout; a worker taking a file must
    wake it, or the remaining files wait for the next event (maybe hours)."""
    queue = WorkQueue(maxsize=1)
    settler = Settler(queue, quiet_period=0.0)
    inbox = _inbox(tmp_path)
    for name in ("a.jpg", "b.jpg"):
        (inbox.path / name).write_bytes(name.encode())
        settler.note(inbox.path / name, inbox, armed=True)
    settler.settle_due()  # one queued, the other refused: the queue is full
    assert queue.depth == 1 and settler.pending() == 1
    settler.start()
    try:
        first = queue.take(timeout=5)
        assert first is not None
        queue.done(first)
        second = queue.take(timeout=5)  # handed over without any new event
        assert second is not None and {first.path.name, second.path.name} == {"a.jpg", "b.jpg"}
        queue.done(second)
    finally:
        settler.stop()
        settler.join()


def test_a_file_no_event_proves_complete_is_taken_after_a_minute_of_silence(
        tmp_path: Path) -> None:
    """A hard link or a writer that never closes (no close event): armed after
    WRITING_TIMEOUT (60 s) without events, then one quiet period to prove it holds still."""
    clock = Clock()
    queue = WorkQueue(maxsize=4)
    settler = Settler(queue, quiet_period=2.0, clock=clock)
    inbox = _inbox(tmp_path)
    path = inbox.path / "linked.jpg"
    path.write_bytes(b"x")
    settler.note(path, inbox, armed=False)
    clock.now += 59.9
    settler.settle_due()
    assert settler.is_pending(path) and queue.depth == 0  # not a minute yet: untouched
    clock.now += 0.1
    settler.settle_due()  # a minute: armed, and one quiet period to hold still
    assert queue.depth == 0
    clock.now += 2.0
    settler.settle_due()
    assert queue.depth == 1 and not settler.is_pending(path)


def test_a_held_file_waits_for_its_folder_with_doubling_pauses_of_at_least_a_second(
        tmp_path: Path) -> None:
    """A retry held until its output folder can take it (disk full) is looked at after its
    delay, then 2 s, 4 s, 8 s... apart (from at least 1 s, however short the first delay),
    never in a loop; it is queued once ready() says so."""
    clock = Clock()
    queue = WorkQueue(maxsize=4)
    settler = Settler(queue, quiet_period=0.5, clock=clock)
    inbox = _inbox(tmp_path)
    path = inbox.path / "retry.jpg"
    path.write_bytes(b"x")
    looks: list[float] = []

    def ready() -> bool:
        looks.append(clock.now)
        return len(looks) >= 4

    settler.hold(path, inbox, 0.1, "retry", ready=ready)
    for _ in range(200):
        clock.now += 0.1
        settler.settle_due()
    assert [round(t - 1000.0, 1) for t in looks] == [0.1, 2.1, 6.1, 14.1]
    assert queue.depth == 1 and settler.held() == {}
