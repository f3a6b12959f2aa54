"""What a start completes after a kill -9 between a move out of the inbox and its journal
record: the row ends up saying where the file really is (or that it is nowhere to be found),
never in progress for ever and never pointing at another file."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from helpers import fast_config

from rotwatchd.config import Config, ensure_dirs
from rotwatchd.output.atomic import temp_name
from rotwatchd.service.journal import Journal
from rotwatchd.service.recovery import clean_temporaries, complete_interrupted, written_folders


def _setup(tmp_path: Path, **overrides: object) -> tuple[Config, Journal]:
    config = fast_config(tmp_path, **overrides)
    ensure_dirs(config)
    return config, Journal(config.state_dir)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_quarantine_move_to_a_numbered_name_is_found_by_its_content(tmp_path: Path) -> None:
    config, journal = _setup(tmp_path)
    inbox = config.inboxes[0]
    (inbox.quarantine / "sub").mkdir()
    (inbox.quarantine / "sub" / "bad.jpg").write_bytes(b"an older broken file, same name")
    (inbox.quarantine / "sub" / "bad.2.jpg").write_bytes(b"another one")
    (inbox.quarantine / "sub" / "badly.jpg").write_bytes(b"this one")  # not a numbered name
    path = inbox.path / "sub" / "bad.jpg"
    digest = _sha(b"this one")
    journal.intend(str(path), digest, "quarantine", detail="corrupt: bad huffman table")
    (inbox.quarantine / "sub" / "bad.1.jpg").write_bytes(b"this one")  # the move, then kill

    assert complete_interrupted(config, journal) == 1

    record = journal.lookup(str(path), digest)
    assert record is not None
    assert (record.outcome, record.output) == ("quarantined",
                                               str(inbox.quarantine / "sub" / "bad.1.jpg"))
    assert record.detail == ("corrupt: bad huffman table; moved to "
                             f"{inbox.quarantine / 'sub' / 'bad.1.jpg'} (recorded after a "
                             "restart)")
    assert journal.interrupted() == []
    journal.close()


def test_a_moved_symlink_is_found_by_its_inode(tmp_path: Path) -> None:
    config, journal = _setup(tmp_path)
    inbox = config.inboxes[0]
    moved = inbox.quarantine / "link.jpg"
    moved.symlink_to("/etc/hostname")
    (inbox.quarantine / "link.1.jpg").symlink_to("/etc/hostname")  # same target, other link
    journal.intend(str(inbox.path / "link.jpg"), "symlink:/etc/hostname", "quarantine",
                   detail="symlink", inode=os.lstat(moved).st_ino)

    assert complete_interrupted(config, journal) == 1

    record = journal.lookup(str(inbox.path / "link.jpg"), "symlink:/etc/hostname")
    assert record is not None and record.output == str(moved)
    journal.close()


def test_a_quarantined_file_that_is_nowhere_is_recorded_as_such(tmp_path: Path) -> None:
    config, journal = _setup(tmp_path)
    inbox = config.inboxes[0]
    (inbox.quarantine / "gone.jpg").write_bytes(b"not the journaled content")
    journal.intend(str(inbox.path / "gone.jpg"), _sha(b"journaled"), "quarantine",
                   detail="truncated")
    journal.intend(str(inbox.path / "deep" / "x.jpg"), _sha(b"x"), "quarantine",
                   detail="corrupt")  # its quarantine subfolder was never made

    assert complete_interrupted(config, journal) == 2

    for path, digest in ((inbox.path / "gone.jpg", _sha(b"journaled")),
                         (inbox.path / "deep" / "x.jpg", _sha(b"x"))):
        record = journal.lookup(str(path), digest)
        assert record is not None
        assert (record.outcome, record.output) == ("quarantined", None)
        assert record.detail is not None and "not found in the quarantine folder" in record.detail
    journal.close()


def test_an_original_disposed_of_after_its_output_was_written_is_done(tmp_path: Path) -> None:
    config, journal = _setup(tmp_path, output={"original": "delete"})
    inbox = config.inboxes[0]
    output = inbox.output / "a.jpg"
    output.write_bytes(b"upright")
    journal.begin(str(inbox.path / "a.jpg"), "h", 10, 1)
    journal.intend(str(inbox.path / "a.jpg"), "h", "dispose", output=str(output),
                   detail="model 90 deg, lossless-jpeg")

    assert complete_interrupted(config, journal) == 1

    record = journal.lookup(str(inbox.path / "a.jpg"), "h")
    assert record is not None
    assert (record.outcome, record.output) == ("done", str(output))
    assert record.detail == "model 90 deg, lossless-jpeg; completed after a restart"
    journal.close()


def test_a_file_that_left_without_an_intent_is_an_error_and_one_still_there_is_redone(
        tmp_path: Path) -> None:
    config, journal = _setup(tmp_path)
    inbox = config.inboxes[0]
    journal.begin(str(inbox.path / "left.jpg"), "h1", 10, 1)  # moved away by hand
    still = inbox.path / "still.jpg"
    still.write_bytes(b"here")
    journal.begin(str(still), "h2", 4, 1, inode=os.lstat(still).st_ino)
    swapped = inbox.path / "swapped.jpg"
    swapped.write_bytes(b"first")
    journal.begin(str(swapped), "h3", 5, 1, inode=os.lstat(swapped).st_ino)
    (inbox.path / "new.jpg").write_bytes(b"another file under that name")
    os.replace(inbox.path / "new.jpg", swapped)  # made while the old one existed: new inode

    assert complete_interrupted(config, journal) == 2

    left = journal.lookup(str(inbox.path / "left.jpg"), "h1")
    assert left is not None and left.outcome == "error"
    assert left.detail == "left the inbox while a previous run was processing it"
    assert journal.interrupted() == [str(still)]  # the rescan redoes it
    swapped_row = journal.lookup(str(swapped), "h3")
    assert swapped_row is not None and swapped_row.outcome == "error"
    journal.close()


def test_temporary_files_are_removed_from_every_written_folder_once(tmp_path: Path) -> None:
    config, journal = _setup(tmp_path, output={"original": "move", "done_dir": "done"})
    journal.close()
    inbox = config.inboxes[0]
    folders = written_folders(config)
    assert folders == [config.state_dir, inbox.output, inbox.review, inbox.quarantine,
                       tmp_path / "done"]
    for folder in folders:
        (folder / temp_name()).write_bytes(b"half written")
        (folder / "kept.jpg").write_bytes(b"a real file")
    assert clean_temporaries(config) == len(folders)
    for folder in folders:
        assert [p.name for p in folder.iterdir() if p.name != "journal.sqlite3"
                and not p.name.startswith("journal.sqlite3-")
                and p.name != "quarantine"] == ["kept.jpg"]
    assert clean_temporaries(config) == 0


def test_a_moved_name_without_extension_is_found_under_its_number(tmp_path: Path) -> None:
    config, journal = _setup(tmp_path)
    inbox = config.inboxes[0]
    (inbox.quarantine / "latest").symlink_to("/etc/hostname")  # an earlier one, same name
    moved = inbox.quarantine / "latest.1"
    moved.symlink_to("/etc/passwd")
    journal.intend(str(inbox.path / "latest"), "symlink:/etc/passwd", "quarantine",
                   detail="symlink", inode=os.lstat(moved).st_ino)

    assert complete_interrupted(config, journal) == 1

    record = journal.lookup(str(inbox.path / "latest"), "symlink:/etc/passwd")
    assert record is not None and record.output == str(moved)
    journal.close()


def test_a_row_whose_file_cannot_be_looked_at_is_left_for_the_redo(tmp_path: Path) -> None:
    """The start cannot tell whether the file left (its folder is now a file of that name):
    it neither records it as gone nor fails; the rescan decides."""
    config, journal = _setup(tmp_path)
    inbox = config.inboxes[0]
    (inbox.path / "trip").write_bytes(b"a file where the folder was")
    journal.begin(str(inbox.path / "trip" / "a.jpg"), "h", 10, 1)

    assert complete_interrupted(config, journal) == 0

    assert journal.interrupted() == [str(inbox.path / "trip" / "a.jpg")]
    journal.close()


def test_the_start_says_how_many_temporary_files_it_removed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config, journal = _setup(tmp_path)
    journal.close()
    for _ in range(3):
        (config.inboxes[0].output / temp_name()).write_bytes(b"half")
    with caplog.at_level(logging.INFO, logger="rotwatchd.service.recovery"):
        assert clean_temporaries(config) == 3
    assert "removed 3 temporary file(s) left by an interrupted run" in caplog.messages
