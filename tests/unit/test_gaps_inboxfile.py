"""An inbox file opened once: its hash is of the whole file, odd entries (a FIFO, a folder, a
path outside the inbox, a symlinked folder) are refused without blocking or leaking a
descriptor, and a failed open leaves nothing open."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rotwatchd.output.atomic import UnsafeFolder
from rotwatchd.output.inboxfile import InboxFile, Replaced, open_inbox_file


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_hash_covers_every_byte_of_a_large_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "big.jpg"
    data = os.urandom(3 * (1 << 20) + 777)
    path.write_bytes(data)
    with open_inbox_file(path, inbox) as opened:
        assert opened.digest() == hashlib.sha256(data).hexdigest()
        assert opened.digest() == hashlib.sha256(data).hexdigest()  # again: same answer


def test_odd_entries_are_refused_without_blocking_or_leaking(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    os.mkfifo(inbox / "pipe.jpg")  # opening it for reading would block without O_NONBLOCK
    (inbox / "folder.jpg").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(b"outside")
    (inbox / "linked").symlink_to(outside)
    (inbox / "link.jpg").symlink_to(outside / "a.jpg")
    before = _open_fds()
    for _ in range(3):
        with pytest.raises(IsADirectoryError, match="not a regular file"):
            open_inbox_file(inbox / "pipe.jpg", inbox)
        with pytest.raises(IsADirectoryError):
            open_inbox_file(inbox / "folder.jpg", inbox)
        with pytest.raises(UnsafeFolder):
            open_inbox_file(outside / "a.jpg", inbox)
        with pytest.raises(UnsafeFolder):
            open_inbox_file(inbox / "linked" / "a.jpg", inbox)
        with pytest.raises(Replaced, match="is now a symbolic link"):
            open_inbox_file(inbox / "link.jpg", inbox)
        with pytest.raises(FileNotFoundError):
            open_inbox_file(inbox / "sub" / "missing.jpg", inbox)
    assert _open_fds() == before


def test_a_file_held_open_is_released_by_close_and_deleted_only_while_named(
        tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    path = inbox / "sub" / "a.jpg"
    path.write_bytes(b"photo")
    before = _open_fds()
    opened = open_inbox_file(path, inbox, expected=os.lstat(path))
    assert isinstance(opened, InboxFile) and opened.still_named()
    opened.unlink()
    assert not path.exists() and not opened.still_named()
    opened.close()
    opened.close()  # twice is harmless
    assert _open_fds() == before


def test_a_file_in_a_folder_removed_meanwhile_is_gone_and_the_folder_stays_gone(
        tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(FileNotFoundError):
        open_inbox_file(inbox / "trip" / "a.jpg", inbox)
    assert list(inbox.iterdir()) == []


def test_leaving_the_with_block_closes_the_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jpg").write_bytes(b"photo")
    before = _open_fds()
    for _ in range(10):
        with open_inbox_file(inbox / "a.jpg", inbox) as opened:
            assert opened.reader.read_bytes() == b"photo"
    assert _open_fds() == before
