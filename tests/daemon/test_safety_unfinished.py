"""A file that looks truncated is left in the inbox for its writer; only what stays broken
after ``watch.unfinished_wait`` unchanged (or is hostile) is quarantined."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import Results, fast_config, make_photo, red_edge
from helpers.paths import REPO_ROOT
from PIL import Image

from rotwatchd.config import load_config
from rotwatchd.service.journal import Journal
from rotwatchd.service.status import format_status


def _deferred(results: Results, name: str) -> int:
    return sum(1 for r in results.skipped if r.outcome == "deferred" and r.path.name == name)


def _wait_deferred(results: Results, name: str, n: int = 1) -> None:
    with results._cond:
        if not results._cond.wait_for(lambda: _deferred(results, name) >= n, 30):
            raise AssertionError(f"{name} was not deferred {n} time(s)")


def test_photo_written_in_closed_pieces_with_long_pauses_is_never_quarantined(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.2, "unfinished_wait": "10m"})
    inbox = config.inboxes[0]
    daemon, results = daemon_factory(config)
    data = make_photo(tmp_path / "src.jpg", correction=90, size=(640, 480)).read_bytes()
    target = inbox.path / "pieces.jpg"
    half = len(data) // 2
    with open(target, "wb") as handle:  # first piece, closed: a close-after-write event
        handle.write(data[:half])
    _wait_deferred(results, "pieces.jpg")  # looked at after the quiet period: truncated
    assert target.read_bytes() == data[:half]  # still in the inbox, untouched
    assert not inbox.quarantine.exists() or not any(inbox.quarantine.iterdir())
    snapshot = daemon.snapshot()  # recorded: status and journal say it waits
    assert snapshot["waiting"]["incomplete"]["paths"] == [str(target)]
    assert "1 looking unfinished" in format_status(snapshot)
    listed = [r for r in daemon.journal.interrupted_records() + daemon.journal.recent_problems()
               if r.path == str(target)]
    assert listed == []  # neither in progress nor a problem: it waits for its writer
    assert daemon.journal.counts()["waiting"] == 1

    with open(target, "ab") as handle:  # the writer comes back, much later than quiet_period
        handle.write(data[half:])
    (result,) = results.wait_count(1)
    assert result.outcome == "done" and result.path == target
    with Image.open(inbox.output / "pieces.jpg") as image:
        assert red_edge(image)[0] == "top"
    assert target.read_bytes() == data  # the original is whole and kept
    assert not inbox.quarantine.exists() or not any(inbox.quarantine.iterdir())
    assert [p.name for p in inbox.path.iterdir()] == ["pieces.jpg"]  # no second fragment
    assert "incomplete" not in daemon.snapshot()["waiting"]


def test_file_that_stays_truncated_is_quarantined_after_the_wait(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1, "unfinished_wait": 1.5})
    inbox = config.inboxes[0]
    daemon, results = daemon_factory(config)
    data = make_photo(tmp_path / "src.jpg", size=(320, 240)).read_bytes()
    broken = inbox.path / "broken.jpg"
    broken.write_bytes(data[: len(data) // 2])
    written = broken.stat().st_mtime
    (result,) = results.wait_count(1)  # no further event: the hold ends by itself
    assert result.outcome == "quarantined" and "truncated" in result.detail
    assert _deferred(results, "broken.jpg") >= 1
    with Journal(config.state_dir) as journal:
        (row,) = [r for r in journal.recent_problems() if r.outcome == "quarantined"]
    assert row.finished_at is not None and row.finished_at >= written + 1.5
    assert (inbox.quarantine / "broken.jpg").read_bytes() == data[: len(data) // 2]


def test_hostile_files_are_quarantined_without_waiting(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1, "unfinished_wait": "1h"},
                         limits={"max_pixels": 10_000, "max_file_size": "1MiB"})
    inbox = config.inboxes[0]
    daemon, results = daemon_factory(config)
    os.symlink("/etc/passwd", inbox.path / "passwd.jpg")
    (inbox.path / "huge.jpg").write_bytes(b"\xff\xd8" + b"\0" * (1024**2 + 10))
    make_photo(inbox.path / "bomb.png", size=(200, 200), fmt="PNG")
    results.wait_count(3)
    assert {n: r.outcome for n, r in results.by_name().items()} == dict.fromkeys(
        ("passwd.jpg", "huge.jpg", "bomb.png"), "quarantined")


@pytest.mark.parametrize("confirmed", [True, False])
def test_processor_defers_by_the_files_age(tmp_path: Path, daemon_factory: Any,
                                           confirmed: bool) -> None:
    config = fast_config(tmp_path, watch={"unfinished_wait": "30m"})
    inbox = config.inboxes[0]
    daemon, _ = daemon_factory(config, start=False)
    partial = inbox.path / "partial.jpg"
    partial.write_bytes(make_photo(tmp_path / "w.jpg").read_bytes()[:300])
    assert daemon.processor.process(partial, inbox, confirmed=confirmed).outcome == "deferred"
    # journaled as waiting for its writer: not counted or listed as a problem
    assert daemon.journal.counts()["waiting"] == 1 and daemon.journal.counts()["error"] == 0
    assert daemon.journal.recent_problems() == []
    old = partial.stat().st_mtime - 29 * 60  # unchanged for 29 minutes: still waits
    os.utime(partial, (old, old))
    assert daemon.processor.process(partial, inbox, confirmed=confirmed).outcome == "deferred"
    assert partial.exists() and daemon.settler.held()["incomplete"] == [partial]
    old -= 2 * 60  # 31 minutes
    os.utime(partial, (old, old))
    assert daemon.processor.process(partial, inbox, confirmed=confirmed).outcome == \
        "quarantined"


def test_unfinished_wait_is_a_documented_config_key(tmp_path: Path) -> None:
    from rotwatchd.config.schema import describe

    assert any(line.strip().startswith("unfinished_wait (duration, default 1800.0)")
               for line in describe())
    example = REPO_ROOT / "config" / "rotwatchd.yaml"
    (tmp_path / "inbox").mkdir()
    text = example.read_text()
    assert "unfinished_wait: 30m" in text
    config_file = tmp_path / "c.yaml"
    config_file.write_text("inboxes: [{path: inbox, output: out}]\n"
                           "watch: {unfinished_wait: 2h}\n")
    assert load_config(config_file).watch.unfinished_wait == 7200.0


def test_files_that_are_not_images_and_not_named_as_images_stay_in_the_inbox(
        tmp_path: Path, daemon_factory: Any) -> None:
    """A phone-sync inbox also holds videos, sidecars and notes: they are not rotwatchd's to
    move. They stay where they are, journaled once as ignored; a photo beside them is handled."""
    config = fast_config(tmp_path, watch={"quiet_period": 0.1})  # unfinished_wait 0 here
    inbox = config.inboxes[0]
    daemon, results = daemon_factory(config)
    others = {"IMG_0042.MOV": b"\0\0\0\x18ftypqt  " + b"\1" * 500,
              "IMG_0042.AAE": b"<?xml version='1.0'?><plist/>", "notes.txt": b"call mum\n"}
    for name, data in others.items():
        (inbox.path / name).write_bytes(data)
    (inbox.path / "empty.txt").write_bytes(b"")
    make_photo(inbox.path / "photo.jpg", size=(320, 240))
    (inbox.path / "broken.jpg").write_bytes(b"not a picture at all")  # named as one: a fault
    results.wait_count(5)
    outcomes = {n: r.outcome for n, r in results.by_name().items()}
    assert outcomes == {"IMG_0042.MOV": "ignored", "IMG_0042.AAE": "ignored",
                        "notes.txt": "ignored", "photo.jpg": "done",
                        "broken.jpg": "quarantined"}, outcomes
    for name, data in others.items():
        assert (inbox.path / name).read_bytes() == data
    # an empty file is never queued by the watcher; a rescan handing it over leaves it too
    assert daemon.processor.process(inbox.path / "empty.txt", inbox).outcome == "skipped"
    assert (inbox.path / "empty.txt").exists()
    assert not any(inbox.quarantine.glob("*IMG_0042*")) and not any(
        inbox.quarantine.glob("notes*"))
    with Journal(config.state_dir) as journal:
        assert journal.counts()["ignored"] == 3
        assert not journal.needs_processing(str(inbox.path / "notes.txt"), _sha(b"call mum\n"))


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
