"""Failed writes (disk full, read-only output) are retried with back-off as soon as the output
can take them again, not at the next hourly rescan; status shows the backlog."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, make_photo, wait_until

from rotwatchd.config import InboxConfig
from rotwatchd.service.retry import SPACE_MARGIN, output_ready, retry_delay, room_needed
from rotwatchd.service.status import format_status
from rotwatchd.watch.settle import READY_CHECK_MAX, Settler
from rotwatchd.watch.workqueue import WorkQueue

# --- pure parts ----------------------------------------------------------------------------


class FakeClock:
    """Monotonic time the test moves by hand (the settler's injected clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _inbox(tmp_path: Path) -> InboxConfig:
    (tmp_path / "in").mkdir(exist_ok=True)
    return InboxConfig(tmp_path / "in", tmp_path / "out", tmp_path / "review", tmp_path / "q")


class _Vfs:
    """An os.statvfs_result stand-in: only the fields output_ready reads."""

    def __init__(self, free: int, read_only: bool = False) -> None:
        self.f_bavail, self.f_frsize = free // 4096, 4096
        self.f_flag = os.ST_RDONLY if read_only else 0


def test_output_ready_needs_room_a_writable_mount_and_permission(tmp_path: Path) -> None:
    def fs(free: int, read_only: bool = False) -> Any:
        return lambda path: _Vfs(free, read_only)

    def allowed(path: Path, mode: int) -> bool:
        return True

    def denied(path: Path, mode: int) -> bool:
        return False

    assert output_ready(tmp_path, 10_000, statvfs=fs(1 << 20), access=allowed)
    assert not output_ready(tmp_path, 10_000, statvfs=fs(4096), access=allowed)  # full
    assert not output_ready(tmp_path, 10, statvfs=fs(1 << 20, read_only=True), access=allowed)
    assert not output_ready(tmp_path, 10, statvfs=fs(1 << 20), access=denied)
    # a folder not created yet: its nearest existing parent decides (real calls)
    assert output_ready(tmp_path / "not" / "yet", 10)


def test_room_asked_for_grows_with_the_file_not_by_a_fixed_megabyte() -> None:
    assert 4_000 < room_needed(2_000) <= 8_192  # a small photo needs kilobytes, not a megabyte
    assert room_needed(300_000) == 600_000  # a re-encoded copy may be larger than its input
    assert room_needed(50 << 20) == (50 << 20) + SPACE_MARGIN


def test_back_off_doubles_and_is_bounded() -> None:
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays[:3] == [2.0, 4.0, 8.0]
    assert delays == sorted(delays) and max(delays) == READY_CHECK_MAX


def test_held_file_is_queued_only_once_ready_checking_with_back_off(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = WorkQueue(maxsize=4)
    settler = Settler(queue, quiet_period=2.0, clock=clock)
    inbox = _inbox(tmp_path)
    path = inbox.path / "a.jpg"
    path.write_bytes(b"complete photo")
    checks: list[float] = []
    ready = False

    def is_ready() -> bool:
        checks.append(clock.now)
        return ready

    settler.hold(path, inbox, 2.0, "retry", ready=is_ready)
    assert settler.held() == {"retry": [path]}
    start = clock.now
    for _ in range(200):  # one simulated second at a time
        clock.now += 1
        settler.settle_due()
    assert queue.depth == 0 and settler.is_pending(path)
    gaps = [b - a for a, b in zip([start, *checks], checks, strict=False)]
    assert gaps[:4] == [2.0, 4.0, 8.0, 16.0]  # doubling...
    assert max(gaps) == READY_CHECK_MAX  # ...bounded
    settler.note(path, inbox, armed=True, scan=True)  # a rescan does not cut the hold short
    assert settler.held() == {"retry": [path]}
    ready = True  # space or permission is back
    clock.now += READY_CHECK_MAX
    settler.settle_due()
    assert queue.depth == 1 and settler.pending() == 0 and settler.held() == {}


# --- real file systems ---------------------------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_outbox(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/outbox`` on a 64 KiB tmpfs (skipped where mounting is not allowed)."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(outbox))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount tmpfs here: {exc.stderr.decode().strip()}")
    yield outbox
    done = subprocess.run(["umount", str(outbox)], capture_output=True)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(outbox)], check=True)


def _waiting_retry(daemon: Any) -> int:
    return int(daemon.snapshot()["waiting"].get("retry", {}).get("count", 0))


def test_disk_full_output_is_retried_once_space_returns(
        tmp_path: Path, small_outbox: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})  # rescan only hourly
    daemon, results = daemon_factory(config)
    photo = make_photo(config.inboxes[0].path / "big.jpg", correction=90, size=(900, 700))
    assert photo.stat().st_size > 64 * 1024
    results.wait_for(lambda items: any(r.outcome == "error" for r in items))
    wait_until(lambda: _waiting_retry(daemon) == 1)  # the backlog shows in status
    assert "waiting: 1 to retry" in format_status(daemon.snapshot())
    assert not any(small_outbox.iterdir())  # no partial output left behind
    _mount("-o", "remount,size=8m", str(small_outbox))  # space is back; no new event
    results.wait_for(lambda items: items[-1].outcome == "done", timeout=60)
    assert (small_outbox / "big.jpg").stat().st_size > 0
    assert _waiting_retry(daemon) == 0 and photo.exists()


def test_small_file_on_a_small_volume_is_retried_once_space_returns(
        tmp_path: Path, small_outbox: Path, daemon_factory: Any) -> None:
    """A volume smaller than a megabyte in all (a small card, a quota): once the space the
    file needs is free again, it is written, although a megabyte never will be."""
    filler = small_outbox / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})  # rescan only hourly
    daemon, results = daemon_factory(config)
    photo = make_photo(config.inboxes[0].path / "small.jpg", correction=90)
    assert photo.stat().st_size < 16 * 1024
    results.wait_for(lambda items: any(r.outcome == "error" for r in items))
    wait_until(lambda: _waiting_retry(daemon) == 1)
    filler.unlink()  # 64 KiB free again, no new event for the photo
    results.wait_for(lambda items: items[-1].outcome == "done", timeout=60)
    assert (small_outbox / "small.jpg").stat().st_size > 0
    assert _waiting_retry(daemon) == 0


def test_read_only_output_is_retried_once_writable_again(
        tmp_path: Path, small_outbox: Path, daemon_factory: Any) -> None:
    _mount("-o", "remount,size=8m", str(small_outbox))
    _mount("-o", "remount,ro", str(small_outbox))
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "a.jpg", correction=180)
    results.wait_for(lambda items: any(r.outcome == "error" for r in items))
    wait_until(lambda: _waiting_retry(daemon) == 1)
    _mount("-o", "remount,rw", str(small_outbox))
    results.wait_for(lambda items: items[-1].outcome == "done", timeout=60)
    assert (small_outbox / "a.jpg").is_file()
    assert daemon.journal.counts()["done"] == 1
