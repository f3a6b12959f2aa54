"""A kill -9 at the wrong moment costs nothing: leftovers are cleaned, redos reuse what the
killed run wrote, and rows whose file already left the inbox are completed at the next start.

A kill is reproduced exactly where it matters by a real journal that dies (raises a
BaseException nothing catches) instead of recording an outcome: everything before that moment
is on disk, as after a kill -9, and nothing after it runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import MarkerClassifier, fast_config, make_photo
from PIL import Image

from rotwatchd.config import Config, ensure_dirs
from rotwatchd.output.atomic import temp_name
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.journal import Journal, Outcome
from rotwatchd.service.processor import Processor


class Killed(BaseException):
    """The process dies here."""


class DyingJournal(Journal):
    """A real journal whose process is killed just before it records ``dies_before``."""

    def __init__(self, state_dir: Path, dies_before: Outcome) -> None:
        super().__init__(state_dir)
        self.dies_before = dies_before

    def finish(self, path: str, sha256: str, outcome: Outcome, **kwargs: Any) -> None:
        if outcome == self.dies_before:
            raise Killed
        super().finish(path, sha256, outcome, **kwargs)


def _killed_while_processing(config: Config, path: Path, dies_before: Outcome) -> None:
    ensure_dirs(config)
    classifier = MarkerClassifier()
    with DyingJournal(config.state_dir, dies_before) as journal:
        processor = Processor(config, journal, ClassifierPool(lambda: classifier))
        with pytest.raises(Killed):
            processor.process(path, config.inboxes[0])


def _plain_photo(path: Path) -> Path:
    """An undecidable picture (no marker): it goes to review."""
    pixels = np.random.default_rng(5).integers(100, 140, size=(64, 96, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=92)
    return path


def test_temporary_files_left_by_a_kill_are_removed_at_start(tmp_path: Path,
                                                             daemon_factory: Any) -> None:
    config = fast_config(tmp_path, output={"original": "move", "done_dir": "done"})
    ensure_dirs(config)
    inbox = config.inboxes[0]
    leftovers = [inbox.output / "sub" / temp_name(), inbox.review / temp_name(),
                 inbox.quarantine / temp_name(), tmp_path / "done" / temp_name(),
                 config.state_dir / temp_name(),  # status.json's
                 # the names earlier versions used (mkstemp; hard links)
                 inbox.output / ".IMG_0001.jpg.k3j_9a2b.rwtmp",
                 inbox.output / ".IMG_0002.jpg.0123456789ab.rwlink"]
    keep = [inbox.output / ".hidden.jpg", inbox.output / "notes.rwtmp",
            inbox.output / "sub" / "IMG_0001.jpg", inbox.review / ".rw-tmp.rwtmp"]
    for path in leftovers + keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a picture")
    daemon_factory(config)
    assert [p for p in leftovers if p.exists()] == []
    assert [p for p in keep if not p.exists()] == []


def test_a_redo_reuses_its_own_review_copy(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, model={"min_confidence": 0.6})
    inbox = config.inboxes[0]
    data = _plain_photo(inbox.path / "a.jpg").read_bytes()
    _killed_while_processing(config, inbox.path / "a.jpg", dies_before="review")
    assert (inbox.review / "a.jpg").read_bytes() == data  # the killed run's copy
    daemon, results = daemon_factory(config)
    (result,) = results.wait_count(1)
    assert (result.outcome, result.output) == ("review", inbox.review / "a.jpg")
    assert sorted(p.name for p in inbox.review.iterdir()) == ["a.jpg"]


@pytest.mark.parametrize("original", ["keep", "delete"])
def test_a_redo_reuses_its_own_output(tmp_path: Path, daemon_factory: Any,
                                      original: str) -> None:
    config = fast_config(tmp_path, output={"original": original})
    inbox = config.inboxes[0]
    source = make_photo(inbox.path / "a.jpg", correction=90).read_bytes()
    _killed_while_processing(config, inbox.path / "a.jpg", dies_before="done")
    written = (inbox.output / "a.jpg").read_bytes()
    daemon, results = daemon_factory(config)
    if original == "keep":  # still in the inbox: redone, and the output is the same
        (result,) = results.wait_count(1)
        assert (result.outcome, result.output) == ("done", inbox.output / "a.jpg")
    else:  # already deleted: the journaled output is recorded at start
        assert not (inbox.path / "a.jpg").exists()
    record = daemon.journal.lookup(str(inbox.path / "a.jpg"), hashlib.sha256(source).hexdigest())
    assert record is not None
    assert (record.outcome, record.output) == ("done", str(inbox.output / "a.jpg"))
    assert daemon.journal.interrupted() == []
    assert sorted(p.name for p in inbox.output.iterdir()) == ["a.jpg"]
    assert (inbox.output / "a.jpg").read_bytes() == written


@pytest.mark.parametrize("content", [b"", b"not a picture\n" * 30])
def test_a_quarantine_move_interrupted_before_its_record_is_completed_at_start(
        tmp_path: Path, daemon_factory: Any, content: bytes,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    (inbox.path / "bad.jpg").write_bytes(content)
    _killed_while_processing(config, inbox.path / "bad.jpg", dies_before="quarantined")
    assert (inbox.quarantine / "bad.jpg").read_bytes() == content  # moved, not recorded
    daemon, results = daemon_factory(config)
    assert daemon.journal.counts() == {"in-progress": 0, "done": 0, "review": 0,
                                       "quarantined": 1, "error": 0, "ignored": 0,
                                       "waiting": 0}
    (record,) = daemon.journal.recent_problems()
    assert (record.outcome, record.output) == ("quarantined", str(inbox.quarantine / "bad.jpg"))
    assert not any("in progress when the last run stopped" in r.getMessage()
                   for r in caplog.records)


def test_a_file_changed_in_place_while_stopped_is_noticed(tmp_path: Path,
                                                          daemon_factory: Any) -> None:
    """Same size, same mtime, other picture: only its ctime (and content) tell."""
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    path = make_photo(inbox.path / "a.bmp", correction=0, fmt="BMP")
    other = make_photo(tmp_path / "other.bmp", correction=180, fmt="BMP", seed=3).read_bytes()
    assert len(other) == path.stat().st_size
    daemon, results = daemon_factory(config)
    results.wait_count(1)
    daemon.stop()

    before = path.stat()
    with open(path, "r+b") as handle:  # rewritten in place, as an editor might
        handle.write(other)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size,
                                                              before.st_mtime_ns)
    daemon, results = daemon_factory(config)
    (result,) = results.wait_count(1)
    assert result.outcome == "done" and result.output == inbox.output / "a.1.bmp"
    with Image.open(result.output) as im:
        assert im.getpixel((im.width // 2, 1))[0] > 200  # the red bar is on top: turned


OLD_SCHEMA = """
CREATE TABLE files (path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER, mtime_ns INTEGER,
    outcome TEXT NOT NULL, correction INTEGER, confidence REAL, source TEXT, output TEXT,
    detail TEXT, started_at REAL NOT NULL, finished_at REAL, PRIMARY KEY (path, sha256));
"""


def test_a_journal_from_an_earlier_version_is_extended_and_its_rows_hashed_once_more(
        tmp_path: Path) -> None:
    import sqlite3

    photo = make_photo(tmp_path / "a.jpg")
    key, st = str(photo), os.stat(photo)
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO files VALUES (?, 'h1', ?, ?, 'done', 0, 0.9, 'model', '/out/a.jpg', "
               "NULL, 1.0, 2.0)", (key, st.st_size, st.st_mtime_ns))
    db.commit()
    db.close()
    with Journal(tmp_path) as journal:
        assert journal.is_known_unchanged(key, st.st_size, st.st_mtime_ns)
        # no ctime on record: a rescan that knows the ctime hashes the file once more...
        assert not journal.is_known_unchanged(key, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                              st.st_ino)
        journal.refresh_stat(key, "h1", st)  # ...finds the same content, and records it
        assert journal.is_known_unchanged(key, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                          st.st_ino)
        # rewritten in place with size and mtime put back (a new ctime), or replaced
        assert not journal.is_known_unchanged(key, st.st_size, st.st_mtime_ns,
                                              st.st_ctime_ns + 1, st.st_ino)
        assert not journal.is_known_unchanged(key, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                              st.st_ino + 1)
