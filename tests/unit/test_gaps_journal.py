"""Review and quarantine are final outcomes, like done: a file seen again (a re-sent event, a
rescan, a restart) is not handled twice, and its journal row says where it went and why."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import MarkerClassifier, fast_config
from PIL import Image

from rotwatchd.config import Config, ensure_dirs
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.journal import Journal
from rotwatchd.service.processor import Processor


def _setup(tmp_path: Path) -> tuple[Config, Journal, Processor]:
    config = fast_config(tmp_path, model={"min_confidence": 0.6})
    ensure_dirs(config)
    journal = Journal(config.state_dir)
    classifier = MarkerClassifier()
    return config, journal, Processor(config, journal, ClassifierPool(lambda: classifier))


def _undecidable(path: Path) -> str:
    """A photo without any orientation cue (it goes to review); returns its sha256."""
    pixels = np.random.default_rng(3).integers(100, 140, size=(64, 96, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=92)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_review_is_final_and_its_row_names_the_copy_and_the_model(tmp_path: Path) -> None:
    config, journal, processor = _setup(tmp_path)
    inbox = config.inboxes[0]
    path = inbox.path / "trip" / "IMG_1.jpg"
    digest = _undecidable(path)

    first = processor.process(path, inbox)
    assert (first.outcome, first.output) == ("review", inbox.review / "trip" / "IMG_1.jpg")
    record = journal.lookup(str(path), digest)
    assert record is not None
    assert (record.outcome, record.source, record.output) == (
        "review", "model", str(inbox.review / "trip" / "IMG_1.jpg"))
    assert record.detail is not None and record.detail.startswith("confidence ")
    assert record.confidence is not None and record.confidence < 0.6

    st = os.stat(path)
    assert journal.is_known_unchanged(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                      st.st_ino)  # a rescan need not even hash it
    again = processor.process(path, inbox)  # a re-sent event, a restart
    assert again.outcome == "skipped"
    assert journal.lookup(str(path), digest) == record
    assert [p.name for p in (inbox.review / "trip").iterdir()] == ["IMG_1.jpg"]
    journal.close()


def test_a_quarantine_is_final_and_its_row_names_where_the_file_went(tmp_path: Path) -> None:
    config, journal, processor = _setup(tmp_path)
    inbox = config.inboxes[0]
    path = inbox.path / "IMG_2.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG at all" * 10)
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()

    first = processor.process(path, inbox)
    assert (first.outcome, first.output) == ("quarantined", inbox.quarantine / "IMG_2.jpg")
    record = journal.lookup(str(path), digest)
    assert record is not None
    assert (record.outcome, record.output) == ("quarantined", str(inbox.quarantine / "IMG_2.jpg"))
    assert record.detail is not None and "moved to" in record.detail

    path.write_bytes(content)  # the phone sends the same broken file again
    again = processor.process(path, inbox)
    assert again.outcome == "skipped"
    assert sorted(p.name for p in inbox.quarantine.iterdir()) == ["IMG_2.jpg"]
    later = journal.lookup(str(path), digest)
    assert later is not None
    assert (later.outcome, later.output, later.detail, later.finished_at) == (
        record.outcome, record.output, record.detail, record.finished_at)
    journal.close()


@pytest.mark.parametrize("outcome", ["done", "review", "quarantined"])
def test_a_rescan_skips_an_unchanged_final_file_but_not_a_changed_one(
        tmp_path: Path, outcome: str) -> None:
    with Journal(tmp_path) as journal:
        journal.begin("/in/a.jpg", "h", 10, 111, ctime_ns=5, inode=7)
        journal.finish("/in/a.jpg", "h", outcome)  # type: ignore[arg-type]
        assert journal.is_known_unchanged("/in/a.jpg", 10, 111, 5, 7)
        assert journal.is_known_unchanged("/in/a.jpg", 10, 111)
        assert not journal.is_known_unchanged("/in/a.jpg", 11, 111, 5, 7)
        assert not journal.is_known_unchanged("/in/a.jpg", 10, 111, 6, 7)  # rewritten in place
        assert not journal.is_known_unchanged("/in/a.jpg", 10, 111, 5, 8)  # another file


def test_an_error_or_an_interrupted_file_is_looked_at_again(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        journal.begin("/in/e.jpg", "h", 10, 111)
        assert not journal.is_known_unchanged("/in/e.jpg", 10, 111)
        journal.finish("/in/e.jpg", "h", "error", detail="disk full", size=10, mtime_ns=111)
        assert not journal.is_known_unchanged("/in/e.jpg", 10, 111)
        assert journal.needs_processing("/in/e.jpg", "h")


def test_a_row_keeps_its_stat_when_finish_does_not_give_one(tmp_path: Path) -> None:
    """A quarantine or review finished without a stat keeps what begin recorded, so the next
    rescan still recognises the file."""
    with Journal(tmp_path) as journal:
        journal.begin("/in/q.jpg", "h", 10, 111, ctime_ns=5, inode=7)
        journal.intend("/in/q.jpg", "h", "quarantine", detail="corrupt")
        journal.finish("/in/q.jpg", "h", "quarantined", output="/q/q.jpg")
        assert journal.is_known_unchanged("/in/q.jpg", 10, 111, 5, 7)
        record = journal.lookup("/in/q.jpg", "h")
        assert record is not None and (record.intent, record.inode) == ("quarantine", 7)
        journal.refresh_stat("/in/q.jpg", "h", os.stat(tmp_path))
        st = os.stat(tmp_path)
        assert journal.is_known_unchanged("/in/q.jpg", st.st_size, st.st_mtime_ns,
                                          st.st_ctime_ns, st.st_ino)


def test_a_name_that_is_not_utf8_comes_back_as_the_same_name(tmp_path: Path) -> None:
    """Names from an old camera or a Windows share may not be UTF-8: after a crash the journal
    gives back the very name (and output) the daemon stored, so the file is found again."""
    name = os.fsdecode(b"/in/Urlaub \xe4\xf6.jpg")
    output = os.fsdecode(b"/out/Urlaub \xe4\xf6.jpg")
    with Journal(tmp_path) as journal:
        journal.begin(name, "h", 10, 1)
        journal.intend(name, "h", "dispose", output=output, detail="rotated")
    with Journal(tmp_path) as journal:  # the next start
        assert journal.interrupted() == [name]
        (record,) = journal.interrupted_records()
        assert (record.path, record.output) == (name, output)
        journal.finish(name, "h", "quarantined", output=output, detail="bad \udce4")
        (problem,) = journal.recent_problems()
        assert (problem.path, problem.output) == (name, output)
        assert problem.detail == "bad \\udce4"  # text for people: quoted, never refused
