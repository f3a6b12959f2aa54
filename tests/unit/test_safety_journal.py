"""A journal that cannot be written is found once, at start, with one line naming it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import fast_config

from rotwatchd.cli.main import main
from rotwatchd.service.journal import JOURNAL_NAME, Journal, JournalNotWritable


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` really read-only: mode bits for a normal user; root ignores those, so
    for root the immutable attribute (skipped where the file system has none)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root without chattr cannot make a file read-only")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in err
    return lines[0]


def test_read_only_journal_is_refused_when_opened(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    with read_only(tmp_path / JOURNAL_NAME), pytest.raises(JournalNotWritable) as caught:
        Journal(tmp_path)
    assert str(tmp_path / JOURNAL_NAME) in str(caught.value)
    with Journal(tmp_path) as journal:  # writable again: opens as before
        assert journal.counts()["done"] == 0


def test_daemon_start_fails_with_one_line_naming_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = fast_config(tmp_path)
    (tmp_path / "rotwatchd.yaml").write_text(
        "inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n")
    Journal(config.state_dir).close()
    with read_only(config.state_dir / JOURNAL_NAME):
        assert main(["run", "-c", str(tmp_path / "rotwatchd.yaml")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(config.state_dir / JOURNAL_NAME) in line and "cannot be written" in line


def test_status_fails_with_one_line_naming_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "rotwatchd.yaml").write_text(
        "inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n")
    Journal(tmp_path / "state").close()
    with read_only(tmp_path / "state" / JOURNAL_NAME):
        assert main(["status", "-c", str(tmp_path / "rotwatchd.yaml")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(tmp_path / "state" / JOURNAL_NAME) in line
