"""Moving a file out of the inbox (quarantine, done folder) when the move is not a plain rename:
another filesystem (a USB disk, a NAS mount), a move that fails, a symlink, a folder not yet
created. Whatever happens, the file is either where the caller was told it is, or still in the
inbox with a reason (CannotMove), and nothing is left behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotwatchd.output.filing import CannotMove, dispose_original, move_into, relative_to_inbox
from rotwatchd.output.inboxfile import open_inbox_file


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than ``tmp_path`` (tmpfs /dev/shm), as a USB disk or a
    NAS mount would be."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test folder")
    with tempfile.TemporaryDirectory(dir=shm, prefix="rotwatchd-test-") as folder:
        yield Path(folder)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith((".rwtmp", ".rwlink"))]


def test_a_file_moves_onto_another_filesystem_whole_and_leaves_the_inbox(
        tmp_path: Path, other_fs: Path) -> None:
    inbox = tmp_path / "inbox"
    photo = inbox / "trip" / "IMG_1.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"\xff\xd8 not really a jpeg " * 1000)
    os.utime(photo, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    content = photo.read_bytes()
    quarantine = other_fs / "quarantine"

    moved = move_into(photo, quarantine, relative_to_inbox(photo, inbox), inbox=inbox)

    assert moved == quarantine / "trip" / "IMG_1.jpg"
    assert moved.read_bytes() == content
    assert moved.stat().st_mtime_ns == 1_600_000_000_000_000_000  # a copy keeps its date
    assert not photo.exists()
    assert _leftovers(quarantine) == []


def test_a_second_file_of_that_name_on_the_other_filesystem_gets_a_number(
        tmp_path: Path, other_fs: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    quarantine = other_fs / "quarantine"
    for content in (b"first", b"second"):
        (inbox / "a.jpg").write_bytes(content)
        move_into(inbox / "a.jpg", quarantine, Path("a.jpg"), inbox=inbox)
    assert (quarantine / "a.jpg").read_bytes() == b"first"
    assert (quarantine / "a.1.jpg").read_bytes() == b"second"


def test_a_symlink_is_left_in_the_inbox_rather_than_copied_across_filesystems(
        tmp_path: Path, other_fs: Path) -> None:
    """Copying a link to another filesystem would follow it (read a file outside the inbox),
    also when the quarantine's subfolder does not exist yet."""
    inbox = tmp_path / "inbox"
    (inbox / "deep").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the quarantine")
    link = inbox / "deep" / "IMG_2.jpg"
    link.symlink_to(secret)
    quarantine = other_fs / "not" / "yet" / "there"

    with pytest.raises(CannotMove, match="link would have to be copied across filesystems"):
        move_into(link, quarantine, relative_to_inbox(link, inbox), inbox=inbox)

    assert link.is_symlink() and os.readlink(link) == str(secret)
    assert not (other_fs / "not").exists()  # nothing was created for it either


def test_a_symlink_moves_as_a_link_into_a_folder_not_yet_created(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "a" / "b").mkdir(parents=True)
    link = inbox / "a" / "b" / "IMG_3.jpg"
    link.symlink_to("/etc/hostname")
    quarantine = tmp_path / "state" / "quarantine"  # neither state nor quarantine exist

    moved = move_into(link, quarantine, relative_to_inbox(link, inbox), inbox=inbox)

    assert moved == quarantine / "a" / "b" / "IMG_3.jpg"
    assert moved.is_symlink() and os.readlink(moved) == "/etc/hostname"
    assert not os.path.lexists(link)


def test_a_move_that_fails_raises_cannot_move_and_keeps_the_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    photo = inbox / "IMG_4.jpg"
    photo.write_bytes(b"photo")
    quarantine = tmp_path / "quarantine"
    quarantine.write_text("a file where the folder should be")

    with pytest.raises(CannotMove) as caught:
        move_into(photo, quarantine, Path("IMG_4.jpg"), inbox=inbox)

    assert str(caught.value)  # a reason for the journal, never empty
    assert photo.read_bytes() == b"photo"


def test_a_file_gone_before_its_move_raises_cannot_move(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(CannotMove) as caught:
        move_into(inbox / "gone.jpg", tmp_path / "quarantine", Path("gone.jpg"), inbox=inbox)
    assert str(caught.value) == "No such file or directory"  # as the journal will say it


def test_a_symlinked_folder_below_the_target_is_refused_with_its_name(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    photo = inbox / "sub" / "IMG_5.jpg"
    photo.write_bytes(b"photo")
    done = tmp_path / "done"
    done.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (done / "sub").symlink_to(elsewhere)

    with pytest.raises(CannotMove, match="symbolic link"):
        move_into(photo, done, Path("sub/IMG_5.jpg"), inbox=inbox)

    assert photo.exists() and list(elsewhere.iterdir()) == []


def test_a_file_replaced_after_it_was_opened_is_not_moved(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    photo = inbox / "IMG_6.jpg"
    photo.write_bytes(b"the photo that was looked at")
    with open_inbox_file(photo, inbox) as source:
        photo.unlink()
        photo.write_bytes(b"another file under that name")
        with pytest.raises(CannotMove, match="replaced"):
            move_into(photo, tmp_path / "done", Path("IMG_6.jpg"), source=source)
    assert photo.read_bytes() == b"another file under that name"
    assert not (tmp_path / "done" / "IMG_6.jpg").exists()


def test_moving_many_files_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """A daemon moves thousands of files; one descriptor kept per move would end it."""
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    before = _open_fds()
    for i in range(20):
        photo = inbox / "sub" / f"{i}.jpg"
        photo.write_bytes(b"x")
        move_into(photo, tmp_path / "done", Path("sub") / photo.name, inbox=inbox)
        plain = inbox / f"plain{i}.jpg"
        plain.write_bytes(b"y")
        move_into(plain, tmp_path / "done", Path(plain.name))
        with pytest.raises(CannotMove):
            move_into(inbox / "missing.jpg", tmp_path / "done", Path("missing.jpg"), inbox=inbox)
    assert _open_fds() == before
    assert len(list((tmp_path / "done").rglob("*.jpg"))) == 40


@pytest.mark.parametrize("policy", ["keep", "move", "delete"])
def test_the_original_goes_where_output_original_says(tmp_path: Path, policy: str) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    photo = inbox / "sub" / "IMG_7.jpg"
    photo.write_bytes(b"original")
    done = tmp_path / "done"
    with open_inbox_file(photo, inbox) as source:
        said = dispose_original(photo, policy, done, Path("sub/IMG_7.jpg"), source=source)
    assert photo.exists() == (policy == "keep")
    assert (done / "sub" / "IMG_7.jpg").exists() == (policy == "move")
    assert said == {"keep": "original kept", "delete": "original deleted",
                    "move": f"original moved to {done / 'sub' / 'IMG_7.jpg'}"}[policy]


def test_a_replaced_original_is_not_deleted(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    photo = inbox / "IMG_8.jpg"
    photo.write_bytes(b"processed")
    with open_inbox_file(photo, inbox) as source:
        photo.unlink()
        photo.write_bytes(b"a new photo under the same name, not processed yet")
        with pytest.raises(OSError, match="not deleted"):
            dispose_original(photo, "delete", None, Path("IMG_8.jpg"), source=source)
    assert photo.read_bytes().startswith(b"a new photo")


def test_a_path_outside_the_inbox_keeps_just_its_name() -> None:
    assert relative_to_inbox(Path("/in/a/b.jpg"), Path("/in")) == Path("a/b.jpg")
    assert relative_to_inbox(Path("/elsewhere/b.jpg"), Path("/in")) == Path("b.jpg")


def test_a_file_whose_folder_was_removed_meanwhile_is_not_moved_and_nothing_recreated(
        tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(CannotMove, match="No such file"):
        move_into(inbox / "trip" / "a.jpg", tmp_path / "quarantine", Path("trip/a.jpg"),
                  inbox=inbox)
    assert list(inbox.iterdir()) == []  # the removed folder is not made again in the inbox


def test_an_original_is_deleted_by_name_when_it_was_not_opened(tmp_path: Path) -> None:
    photo = tmp_path / "IMG_9.jpg"
    photo.write_bytes(b"original")
    assert dispose_original(photo, "delete", None, Path("IMG_9.jpg")) == "original deleted"
    assert not photo.exists()
