"""Hostile and broken input: quarantined with one clear log line; the daemon keeps going."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, make_photo, wait_until

from rotwatchd.service.journal import Journal


def _quarantine_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "quarantined" in r.getMessage()
            and name in r.getMessage()]


def test_bad_files_are_quarantined_and_good_ones_still_processed(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = fast_config(tmp_path)
    inbox, quarantine = config.inboxes[0].path, config.inboxes[0].quarantine
    daemon, results = daemon_factory(config)

    good = make_photo(tmp_path / "good.jpg", size=(320, 240)).read_bytes()
    bad: dict[str, bytes] = {
        "truncated.jpg": good[: len(good) // 2],
        "garbage.jpg": good[:200] + os.urandom(len(good) - 400) + good[-200:],
        "notes.jpg": b"this is a text file, not a photo\n" * 20,
        "empty.jpg": b"",
    }
    for name, data in bad.items():
        (inbox / name).write_bytes(data)
    os.symlink("/etc/passwd", inbox / "passwd.jpg")
    results.wait_count(len(bad) + 1)

    (inbox / "after.jpg").write_bytes(good)  # the daemon is still alive and working
    results.wait_for(lambda items: any(r.path.name == "after.jpg" for r in items))
    outcomes = {name: r.outcome for name, r in results.by_name().items()}
    assert outcomes == {**dict.fromkeys(bad, "quarantined"), "passwd.jpg": "quarantined",
                        "after.jpg": "done"}
    for name, data in bad.items():
        assert (quarantine / name).read_bytes() == data, name  # not a byte lost
        assert not (inbox / name).exists()
        assert len(_quarantine_lines(caplog, name)) == 1, name
    link = quarantine / "passwd.jpg"
    assert link.is_symlink() and os.readlink(link) == "/etc/passwd"  # moved, never followed
    assert "outside the inbox" in _quarantine_lines(caplog, "passwd.jpg")[0]
    assert Path("/etc/passwd").exists()
    with Journal(config.state_dir) as journal:
        assert journal.counts()["quarantined"] == 5


def test_limits_quarantine_oversized_images(tmp_path: Path, daemon_factory: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    config = fast_config(tmp_path, limits={"max_pixels": 10_000, "max_file_size": "1MiB"})
    inbox = config.inboxes[0].path
    daemon, results = daemon_factory(config)
    make_photo(inbox / "big.png", size=(200, 200), fmt="PNG")  # 40 000 px > 10 000
    (inbox / "huge.jpg").write_bytes(b"\xff\xd8" + b"\0" * (1024**2 + 10))
    results.wait_count(2)
    got = results.by_name()
    assert got["big.png"].outcome == "quarantined" and "too-large" in got["big.png"].detail
    assert got["huge.jpg"].outcome == "quarantined" and "max_file_size" in got["huge.jpg"].detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_quarantined(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    secret = make_photo(tmp_path / "secret.jpg")
    secret.chmod(0)
    os.rename(secret, config.inboxes[0].path / "secret.jpg")
    (result,) = results.wait_count(1)
    assert result.outcome == "quarantined" and "unreadable" in result.detail


def test_quarantine_never_overwrites(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    quarantine = config.inboxes[0].quarantine
    quarantine.mkdir(parents=True)
    (quarantine / "bad.jpg").write_bytes(b"an earlier bad file")
    daemon, results = daemon_factory(config)
    (config.inboxes[0].path / "bad.jpg").write_bytes(b"a newer bad file")
    results.wait_count(1)
    assert (quarantine / "bad.jpg").read_bytes() == b"an earlier bad file"
    assert (quarantine / "bad.1.jpg").read_bytes() == b"a newer bad file"


def test_unconfirmed_broken_file_that_just_changed_waits_instead_of_quarantine(
        tmp_path: Path, daemon_factory: Any) -> None:
    """A scan (or a missed close event) may find a file mid-write: it looks truncated."""
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    daemon, results = daemon_factory(config, start=False)
    whole = make_photo(tmp_path / "whole.jpg", size=(320, 240)).read_bytes()
    partial = inbox.path / "partial.jpg"
    partial.write_bytes(whole[: len(whole) // 2])

    deferred = daemon.processor.process(partial, inbox, confirmed=False)
    assert deferred.outcome == "deferred" and partial.exists()
    assert daemon.settler.is_pending(partial)  # waits for its close event or the timeout

    old = partial.stat().st_mtime - 120  # silent for two minutes: really truncated
    os.utime(partial, (old, old))
    late = daemon.processor.process(partial, inbox, confirmed=False)
    assert late.outcome == "quarantined"
    assert (inbox.quarantine / "partial.jpg").read_bytes() == whole[: len(whole) // 2]


def test_confirmed_broken_file_is_quarantined_at_once(tmp_path: Path,
                                                      daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    daemon, results = daemon_factory(config, start=False)
    broken = inbox.path / "closed.jpg"
    broken.write_bytes(make_photo(tmp_path / "w.jpg").read_bytes()[:100])
    assert daemon.processor.process(broken, inbox, confirmed=True).outcome == "quarantined"


def test_a_link_to_an_inbox_file_gets_one_line_and_its_target_is_processed_once(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = fast_config(tmp_path)
    inbox = config.inboxes[0].path
    daemon, results = daemon_factory(config)
    make_photo(tmp_path / "staging.jpg", correction=90)
    os.rename(tmp_path / "staging.jpg", inbox / "real.jpg")
    results.wait_for(lambda items: any(r.path.name == "real.jpg" for r in items))
    os.symlink("real.jpg", inbox / "alias.jpg")
    wait_until(lambda: any(r.path.name == "alias.jpg" for r in list(results.skipped)))
    lines = [r.getMessage() for r in caplog.records if "alias.jpg" in r.getMessage()]
    assert len(lines) == 1 and "symbolic link to real.jpg" in lines[0]
    assert (inbox / "alias.jpg").is_symlink()  # left alone
    assert sorted(p.name for p in config.inboxes[0].output.iterdir()) == ["real.jpg"]
