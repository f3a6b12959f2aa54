"""Missed files: lost inotify events, the watch limit, and an inbox removed and re-created.

Real inotify throughout. Where the kernel cannot be made to fail on cue, the failure is injected
at the boundary: the kernel's own overflow event handed to watchdog's reader, and a guard that
refuses ``inotify_add_watch`` for one folder with ENOSPC as the kernel does at the limit.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, make_photo, wait_until
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

from rotwatchd.cli.main import main
from rotwatchd.service.status import format_status, read_status
from rotwatchd.watch.inotify import ReportingInotifyObserver, limit_hint
from rotwatchd.watch.watcher import INOTIFY_DISPATCH_TIMEOUT, make_observer


def _messages(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if all(word in r.getMessage() for word in words)]


def _done(results: Any, names: set[str]) -> bool:
    got = {r.path.name for r in results.items if r.outcome == "done"}
    return names <= got


# --- lost events (inotify queue overflow) ----------------------------------------------------


class _Losing(FileSystemEventHandler):
    """Passes events on, except file events while the owner is losing them."""

    def __init__(self, handler: FileSystemEventHandler, owner: LossyObserver) -> None:
        self._handler = handler
        self._owner = owner

    def dispatch(self, event: FileSystemEvent) -> None:
        if self._owner.losing.is_set() and event.event_type in ("created", "modified",
                                                                "closed", "opened"):
            with self._owner.cond:
                self._owner.lost += event.event_type == "closed"
                self._owner.cond.notify_all()
            return
        self._handler.dispatch(event)


class LossyObserver:
    """The real inotify observer whose file events get lost while ``losing`` is set, as they
    are when the kernel queue overflows (injected observer factory)."""

    def __init__(self) -> None:
        self.real = make_observer(False)
        self.losing = threading.Event()
        self.cond = threading.Condition()
        self.lost = 0  # close-after-write events lost

    def schedule(self, handler: Any, path: str, *, recursive: bool = False) -> Any:
        return self.real.schedule(_Losing(handler, self), path, recursive=recursive)

    def start(self) -> None:
        self.real.start()

    def stop(self) -> None:
        self.real.stop()

    def join(self, timeout: float | None = None) -> None:
        self.real.join(timeout)

    def overflow(self) -> None:
        """Hand watchdog's inotify reader the event the kernel sends on overflow (wd -1)."""
        overflow = InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b"")
        self.real._inotify_fd.handle_event(overflow)  # watchdog's reader, as from read()


def _observers_refusing(refuse: Callable[[bytes], None]) -> Callable[[bool], Any]:
    """Observer factory whose inotify observer meets the watch limit where ``refuse`` raises
    (the kernel boundary, injected); polling observers are the real ones."""
    def factory(polling: bool) -> Any:
        if polling:
            return make_observer(True)
        return ReportingInotifyObserver(timeout=INOTIFY_DISPATCH_TIMEOUT, guard=refuse)

    return factory


def test_lost_events_rescan_the_inbox_at_once(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})  # rescan only hourly
    lossy: list[LossyObserver] = []

    def factory(polling: bool) -> Any:
        lossy.append(LossyObserver())
        return lossy[-1]

    daemon, results = daemon_factory(config, observer_factory=factory)
    make_photo(config.inboxes[0].path / "sub" / "probe.jpg")  # "sub" is watched once it is done
    results.wait_for(lambda items: _done(results, {"probe.jpg"}))
    wait_until(lambda: daemon.rescans >= 1)  # the startup rescan is over
    (observer,) = lossy
    observer.losing.set()
    names = {f"lost{i}.jpg" for i in range(5)} | {"sub/lost.jpg"}
    for name in sorted(names):
        make_photo(config.inboxes[0].path / name, correction=90, seed=len(name))
    with observer.cond:
        assert observer.cond.wait_for(lambda: observer.lost >= len(names), 30)
    observer.losing.clear()
    assert daemon.settler.pending() == 0 and len(results.items) == 1  # nothing knows of them
    observer.overflow()
    results.wait_for(lambda items: _done(results, {Path(n).name for n in names}))
    assert len(_messages(caplog, "events were lost", "rescanning it now")) == 1


def _set_sysctl(path: Path, value: str) -> None:
    path.write_text(value)


@pytest.fixture
def small_inotify_queue() -> Iterator[Path]:
    """The global fs.inotify.max_queued_events, writable (root), else the test is skipped."""
    path = Path("/proc/sys/fs/inotify/max_queued_events")
    if not os.access(path, os.W_OK):
        pytest.skip("fs.inotify.max_queued_events is not writable here")
    yield path


def test_real_queue_overflow_loses_no_file(
        tmp_path: Path, daemon_factory: Any, small_inotify_queue: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A 16-event kernel queue (set only while this daemon's inotify instance is created, then
    restored) and a burst of files written by another process."""
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})
    saved = small_inotify_queue.read_text().strip()

    def factory(polling: bool) -> Any:
        if polling:
            return make_observer(True)
        _set_sysctl(small_inotify_queue, "16")
        try:
            return make_observer(False)  # inotify_init() takes the queue size now
        finally:
            _set_sysctl(small_inotify_queue, saved)

    daemon, results = daemon_factory(config, observer_factory=factory)
    wait_until(lambda: daemon.rescans >= 1)
    src = make_photo(tmp_path / "src.jpg", size=(48, 32))
    names: set[str] = set()
    for burst in range(5):  # until the kernel has reported an overflow
        batch = [f"b{burst}_{i:03d}.jpg" for i in range(150)]
        names |= set(batch)
        subprocess.run([sys.executable, "-c", (
            "import sys, pathlib; data = pathlib.Path(sys.argv[1]).read_bytes()\n"
            "for name in sys.argv[3:]: (pathlib.Path(sys.argv[2]) / name).write_bytes(data)"),
            str(src), str(config.inboxes[0].path), *batch], check=True)
        if _messages(caplog, "overflow"):
            break
    assert _messages(caplog, "overflow"), "the kernel queue never overflowed"
    results.wait_for(lambda items: _done(results, names), timeout=60)
    assert len(list(config.inboxes[0].output.iterdir())) == len(names)


# --- the watch limit ---------------------------------------------------------------------------


def test_limit_hint_names_the_limit_its_value_and_how_to_raise_it(tmp_path: Path) -> None:
    (tmp_path / "fs" / "inotify").mkdir(parents=True)
    (tmp_path / "fs" / "inotify" / "max_user_watches").write_text("8192\n")
    hint = limit_hint(errno.ENOSPC, tmp_path)
    assert hint is not None
    assert "fs.inotify.max_user_watches = 8192" in hint
    assert "sysctl -w fs.inotify.max_user_watches=" in hint and "/etc/sysctl.d/" in hint
    assert limit_hint(errno.ENOENT, tmp_path) is None


def test_watch_limit_on_a_new_subfolder_polls_the_inbox(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})  # rescan only hourly
    inbox = config.inboxes[0].path

    def refuse(folder: bytes) -> None:  # the kernel at max_user_watches
        if os.path.basename(folder) == b"full":
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    daemon, results = daemon_factory(config, observer_factory=_observers_refusing(refuse))
    make_photo(inbox / "first.jpg", correction=90)
    results.wait_for(lambda items: _done(results, {"first.jpg"}))
    (inbox / "full").mkdir()  # its watch is refused
    wait_until(lambda: daemon.watchers[0].polling)
    make_photo(inbox / "full" / "late.jpg", correction=270)  # only polling can see this
    results.wait_for(lambda items: _done(results, {"late.jpg"}))
    lines = _messages(caplog, "fs.inotify.max_user_watches")
    assert len(lines) == 1 and "polling this inbox" in lines[0] and "sysctl -w" in lines[0]
    assert str(inbox / "full") in lines[0]
    (entry,) = daemon.snapshot()["inboxes"]
    assert entry["state"] == "polling" and "max_user_watches" in entry["fallback"]
    assert "polling instead of inotify" in format_status(daemon.snapshot())


def test_watch_limit_at_start_gives_one_line_and_polls(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})
    inbox = config.inboxes[0].path
    for name in ("a", "b", "c"):
        (inbox / "deep" / name).mkdir(parents=True)

    def refuse(folder: bytes) -> None:  # the limit is reached below "deep"
        if b"/deep/" in folder:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    daemon, results = daemon_factory(config, observer_factory=_observers_refusing(refuse))
    wait_until(lambda: daemon.watchers[0].polling and daemon.rescans >= 1)
    make_photo(inbox / "deep" / "b" / "x.jpg", correction=90)
    results.wait_for(lambda items: _done(results, {"x.jpg"}))
    assert len(_messages(caplog, "fs.inotify.max_user_watches")) == 1


# --- an inbox removed and re-created -----------------------------------------------------------


def _state(daemon: Any) -> str:
    return str(daemon.snapshot()["inboxes"][0]["state"])


def test_removed_inbox_shows_in_status_and_is_watched_again_when_recreated(
        tmp_path: Path, daemon_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})  # rescan only hourly
    (tmp_path / "rotwatchd.yaml").write_text(
        "inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n")
    inbox = config.inboxes[0].path
    daemon, results = daemon_factory(config)
    make_photo(inbox / "before.jpg", correction=90)
    results.wait_for(lambda items: _done(results, {"before.jpg"}))

    shutil.rmtree(inbox)
    wait_until(lambda: _state(daemon) == "missing")
    wait_until(lambda: [i.get("state") for i in (read_status(config.state_dir) or {})
                        .get("inboxes", [])] == ["missing"])  # published in status.json
    capsys.readouterr()
    assert main(["status", "-c", str(tmp_path / "rotwatchd.yaml")]) == 0  # not refused
    shown = capsys.readouterr().out
    assert f"inbox {inbox}: MISSING (not found)" in shown

    inbox.mkdir()
    make_photo(inbox / "after.jpg", correction=180)
    results.wait_for(lambda items: _done(results, {"after.jpg"}))
    assert _state(daemon) == "watching"
    make_photo(inbox / "later.jpg", correction=270)  # events flow again, no rescan needed
    results.wait_for(lambda items: _done(results, {"later.jpg"}))
    assert daemon.rescans == 1


def test_inbox_moved_away_and_replaced_is_watched_again(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})
    inbox = config.inboxes[0].path
    daemon, results = daemon_factory(config)
    wait_until(lambda: daemon.rescans >= 1)
    os.rename(inbox, tmp_path / "inbox.old")
    inbox.mkdir()
    make_photo(inbox / "new.jpg", correction=90)
    results.wait_for(lambda items: _done(results, {"new.jpg"}))
    assert not any(r.path.parent == tmp_path / "inbox.old" for r in results.items)


def test_removed_polled_inbox_is_polled_again_when_recreated(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, inboxes=[{"path": "inbox", "output": "outbox",
                                             "polling": True}])
    inbox = config.inboxes[0].path
    daemon, results = daemon_factory(config)
    wait_until(lambda: daemon.rescans >= 1)
    shutil.rmtree(inbox)
    wait_until(lambda: _state(daemon) == "missing")
    inbox.mkdir()
    wait_until(lambda: _state(daemon) == "polling")
    make_photo(inbox / "polled.jpg", correction=90)
    results.wait_for(lambda items: _done(results, {"polled.jpg"}))


@pytest.fixture
def mounted_inbox(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/inbox`` as a tmpfs mount point (skipped where mounting is not allowed)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inbox)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")
    yield inbox
    subprocess.run(["umount", "-l", str(inbox)], capture_output=True)


def test_unmounted_inbox_is_missing_until_mounted_again(
        tmp_path: Path, mounted_inbox: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})
    daemon, results = daemon_factory(config)
    wait_until(lambda: daemon.rescans >= 1)
    subprocess.run(["umount", str(mounted_inbox)], check=True)
    wait_until(lambda: _state(daemon) == "missing")
    assert "MISSING (its file system is not mounted)" in format_status(daemon.snapshot())
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mounted_inbox)], check=True)
    make_photo(mounted_inbox / "remounted.jpg", correction=90)
    results.wait_for(lambda items: _done(results, {"remounted.jpg"}))
    assert _state(daemon) == "watching"
