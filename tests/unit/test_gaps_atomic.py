"""The one module that writes: no descriptor kept per file written (a daemon writes thousands),
a hard-linked upright copy stays a link also in a folder it has to create, and falls back to a
real copy only where a link cannot be made (another filesystem)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import make_photo

from rotwatchd.output.atomic import (
    NAME_MAX,
    Placed,
    UnsafeFolder,
    atomic_copy,
    atomic_link,
    atomic_write_bytes,
    move_no_clobber,
    numbered_name,
    remove_temporaries,
    temp_name,
)
from rotwatchd.output.writer import write_corrected


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test folder")
    with tempfile.TemporaryDirectory(dir=shm, prefix="rotwatchd-test-") as folder:
        yield Path(folder)


def test_writing_many_files_into_new_folders_keeps_no_descriptor(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = tmp_path / "source.jpg"
    source.write_bytes(b"picture")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    before = _open_fds()
    for i in range(8):
        atomic_write_bytes(out / f"y{i}" / "m" / "a.jpg", b"data %d" % i, within=out,
                           keep_existing=True)
        atomic_write_bytes(out / f"y{i}" / "m" / "a.jpg", b"data %d" % i, within=out,
                           keep_existing=True)  # the same bytes again: reused
        atomic_copy(source, out / f"y{i}" / "copy.jpg", within=out, keep_existing=True)
        atomic_link(source, out / f"y{i}" / "link.jpg", within=out, keep_existing=True)
        (inbox / f"{i}.jpg").write_bytes(b"moved")
        move_no_clobber(inbox / f"{i}.jpg", out / "moved", within=out)
        with pytest.raises(UnsafeFolder):
            atomic_write_bytes(out / ".." / "escape.jpg", b"x", within=out)
    assert _open_fds() == before
    assert len(list(out.rglob("*.jpg"))) == 8 * 4


def test_a_hardlinked_upright_copy_in_a_new_nested_folder_is_a_link(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "inbox" / "IMG_1.jpg", correction=0)
    out = tmp_path / "out"
    target = out / "2024" / "06" / "IMG_1.jpg"

    result = write_corrected(photo, target, orientation=1, hardlink_upright=True, within=out)

    assert result.action == "hardlinked"
    assert os.stat(result.path).st_ino == os.stat(photo).st_ino
    assert [p.name for p in (out / "2024" / "06").iterdir()] == ["IMG_1.jpg"]  # no temporary


def test_a_hardlink_across_filesystems_becomes_a_faithful_copy(tmp_path: Path,
                                                               other_fs: Path) -> None:
    photo = make_photo(tmp_path / "inbox" / "IMG_2.jpg", correction=0)
    out = other_fs / "out"

    result = write_corrected(photo, out / "a" / "IMG_2.jpg", orientation=1,
                             hardlink_upright=True, within=out)

    assert result.action == "copied"
    assert result.path.read_bytes() == photo.read_bytes()
    assert result.path.stat().st_mtime_ns == photo.stat().st_mtime_ns


def test_a_link_to_a_name_holding_other_bytes_gets_a_number(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    (out / "d" / "a.jpg").write_bytes(b"someone else's picture")
    source = tmp_path / "a.jpg"
    source.write_bytes(b"ours")

    placed = atomic_link(source, out / "d" / "a.jpg", within=out, keep_existing=True)
    again = atomic_link(source, out / "d" / "a.jpg", within=out, keep_existing=True)

    assert placed.path == out / "d" / "a.1.jpg" and not placed.reused
    assert again.path == placed.path and again.reused  # the same file again: no a.2.jpg
    assert (out / "d" / "a.jpg").read_bytes() == b"someone else's picture"
    assert sorted(p.name for p in (out / "d").iterdir()) == ["a.1.jpg", "a.jpg"]


def test_a_replacing_write_leaves_only_the_new_content(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.write_bytes(b"old")
    placed = atomic_write_bytes(target, b"new")
    assert placed == Placed(target, reused=False) and target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_move_onto_another_filesystem_keeps_bytes_mode_and_date(tmp_path: Path,
                                                                  other_fs: Path) -> None:
    source = tmp_path / "IMG_3.jpg"
    source.write_bytes(b"photo bytes" * 5000)
    os.chmod(source, 0o640)
    os.utime(source, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    (other_fs / "done").mkdir()
    (other_fs / "done" / "IMG_3.jpg").write_bytes(b"taken")

    moved = move_no_clobber(source, other_fs / "done", within=other_fs / "done")

    assert moved == other_fs / "done" / "IMG_3.1.jpg"
    assert moved.read_bytes() == b"photo bytes" * 5000
    st = moved.stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 1_500_000_000_000_000_000)
    assert not source.exists()
    assert remove_temporaries(other_fs) == 0


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_a_numbered_long_name_keeps_every_whole_character_that_fits(char: str) -> None:
    """Phones name files with accents and emoji: numbering a 255-byte name shortens its stem
    by whole characters, as few as needed, and never leaves half of one."""
    width = len(char.encode())
    name = char * (250 // width) + ".jpeg"
    for n in (1, 12, 345):
        out = numbered_name(name, n)
        tail = f".{n}.jpeg"
        room = NAME_MAX - len(tail)
        assert out == char * min(250 // width, room // width) + tail
        assert len(os.fsencode(out)) <= NAME_MAX


def test_a_fresh_file_gets_the_ordinary_mode(tmp_path: Path) -> None:
    """A file written from nothing (status.json) is created 0666 less the umask, like any
    program's: readable as the umask allows, never executable."""
    umask = os.umask(0o022)
    try:
        placed = atomic_write_bytes(tmp_path / "status.json", b"{}")
    finally:
        os.umask(umask)
    assert placed.path.stat().st_mode & 0o777 == 0o644


def test_the_same_large_picture_again_reuses_its_output(tmp_path: Path) -> None:
    """A redo (after a crash, or the same photo sent twice) of a picture of several MiB finds
    its own output and writes no ``.1`` copy."""
    data = os.urandom(3 * (1 << 20) + 12345)
    out = tmp_path / "out"
    first = atomic_write_bytes(out / "IMG_9.jpg", data, within=out, keep_existing=True)
    again = atomic_write_bytes(out / "IMG_9.jpg", data, within=out, keep_existing=True)
    assert (again.path, again.reused) == (first.path, True)
    other = atomic_write_bytes(out / "IMG_9.jpg", data[:-1] + b"!", within=out,
                               keep_existing=True)
    assert other.path == out / "IMG_9.1.jpg" and not other.reused


def test_a_picture_given_in_pieces_is_written_whole_and_found_again(tmp_path: Path) -> None:
    """Pieces (bytes and views, as the JPEG writer hands them) are one file: the same bytes
    as the joined data, and a redo given as one block finds it."""
    data = os.urandom(2 * (1 << 20) + 777)
    out = tmp_path / "out"
    pieces = [data[:2], memoryview(data)[2:1000], data[1000:1001], memoryview(data)[1001:]]
    first = atomic_write_bytes(out / "IMG_7.jpg", pieces, within=out, keep_existing=True)
    assert first == Placed(out / "IMG_7.jpg", reused=False) and first.path.read_bytes() == data
    again = atomic_write_bytes(out / "IMG_7.jpg", data, within=out, keep_existing=True)
    assert (again.path, again.reused) == (first.path, True)
    assert [p.name for p in out.iterdir()] == ["IMG_7.jpg"]  # no temporary file left


def test_files_moved_under_one_name_are_numbered_one_two_three(tmp_path: Path) -> None:
    inbox, quarantine = tmp_path / "inbox", tmp_path / "quarantine"
    inbox.mkdir()
    for content in (b"one", b"two", b"three"):
        (inbox / "scan.jpg").write_bytes(content)
        move_no_clobber(inbox / "scan.jpg", quarantine, within=quarantine)
    assert {p.name: p.read_bytes() for p in quarantine.iterdir()} == {
        "scan.jpg": b"one", "scan.1.jpg": b"two", "scan.2.jpg": b"three"}


def test_a_link_planted_under_the_output_name_is_neither_reused_nor_followed(
        tmp_path: Path) -> None:
    """Even when it points at a file with exactly the new bytes, a symlink in the output
    folder is not "the same output": the copy gets its own name."""
    out = tmp_path / "out"
    out.mkdir()
    twin = tmp_path / "twin.jpg"
    twin.write_bytes(b"the picture")
    (out / "a.jpg").symlink_to(twin)

    placed = atomic_write_bytes(out / "a.jpg", b"the picture", within=out, keep_existing=True)

    assert placed == Placed(out / "a.1.jpg", reused=False)
    assert (out / "a.jpg").is_symlink() and twin.read_bytes() == b"the picture"


@pytest.mark.parametrize("how", ["write", "copy", "link"])
def test_a_folder_under_the_output_name_is_passed_over_and_kept(tmp_path: Path,
                                                                how: str) -> None:
    """A folder named like the picture (an album called ``IMG_1.jpg``) is never taken for the
    picture already written, even when the picture has exactly the folder's size, the one
    figure a folder and a file have in common: the picture gets the next number, the folder
    keeps its files."""
    out = tmp_path / "out"
    album = out / "IMG_1.jpg"
    album.mkdir(parents=True)
    (album / "inside.jpg").write_bytes(b"someone else's picture")
    data = os.urandom(album.stat().st_size)
    source = tmp_path / "IMG_1.jpg"
    source.write_bytes(data)
    writers: dict[str, Callable[[], Placed]] = {
        "write": lambda: atomic_write_bytes(album, data, within=out, keep_existing=True),
        "copy": lambda: atomic_copy(source, album, within=out, keep_existing=True),
        "link": lambda: atomic_link(source, album, within=out, keep_existing=True),
    }

    placed = writers[how]()

    assert placed == Placed(out / "IMG_1.1.jpg", reused=False)
    assert placed.path.read_bytes() == data
    assert [(p.name, p.read_bytes()) for p in album.iterdir()] == [
        ("inside.jpg", b"someone else's picture")]
    assert sorted(p.name for p in out.iterdir()) == ["IMG_1.1.jpg", "IMG_1.jpg"]


def _tag(path: Path, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENOSPC, errno.EPERM):
            pytest.skip(f"{path.parent} keeps no (or too few) user extended attributes: "
                        f"{exc.strerror}")
        raise


def test_a_copy_keeps_the_pictures_extended_attributes(tmp_path: Path) -> None:
    """Desktop tags and the download origin (``user.xdg.*``) travel with the picture into
    its copy, as its date and permission bits do."""
    source = tmp_path / "IMG_4.jpg"
    source.write_bytes(b"tagged picture")
    _tag(source, "user.xdg.tags", b"holiday,beach")
    _tag(source, "user.xdg.origin.url", b"https://example.org/IMG_4.jpg")
    out = tmp_path / "out"

    copied = atomic_copy(source, out / "IMG_4.jpg", within=out, keep_existing=True)
    written = atomic_write_bytes(out / "IMG_4.rotated.jpg", b"rotated", stat_from=source,
                                 within=out)

    for placed in (copied, written):
        assert sorted(os.listxattr(placed.path)) == ["user.xdg.origin.url", "user.xdg.tags"]
        assert os.getxattr(placed.path, "user.xdg.tags") == b"holiday,beach"


def test_a_picture_whose_attributes_cannot_be_listed_is_copied_without_them(
        tmp_path: Path, other_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The kernel refuses to list more than 64 KiB of attribute names (E2BIG), as a network
    or FUSE filesystem may refuse listing at all: the picture is still copied, with its date
    and permission bits, and one warning says its attributes were left behind."""
    source = other_fs / "IMG_5.jpg"
    source.write_bytes(b"picture with too many attributes")
    for i in range(300):  # 300 names of 240 bytes: more than the 64 KiB listxattr returns
        _tag(source, f"user.{i:03d}." + "x" * 231, b"1")
    with pytest.raises(OSError) as refused:
        os.listxattr(source)
    assert refused.value.errno == errno.E2BIG
    os.chmod(source, 0o640)
    os.utime(source, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    out = tmp_path / "out"

    with caplog.at_level(logging.WARNING, logger="rotwatchd.output.atomic"):
        placed = atomic_copy(source, out / "IMG_5.jpg", within=out, keep_existing=True)

    assert placed == Placed(out / "IMG_5.jpg", reused=False)
    assert placed.path.read_bytes() == b"picture with too many attributes"
    st = placed.path.stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 1_500_000_000_000_000_000)
    assert os.listxattr(placed.path) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"{source}: its extended attributes cannot be listed (Argument list too long); "
        "copied without them"]


@pytest.mark.parametrize(("name", "second"), [
    (b"caf\xe9.jpg", b"caf\xe9.1.jpg"),
    (b"caf\xe9 \xff.jpg", b"caf\xe9 \xff.1.jpg"),
    (b"\xe9" * 251 + b".jpg", b"\xe9" * 249 + b".1.jpg"),  # 255 bytes: two must go
])
def test_a_name_that_is_not_utf8_keeps_every_byte_that_fits_when_numbered(
        tmp_path: Path, name: bytes, second: bytes) -> None:
    """A Latin-1 name from an old camera or share ("café" ends in the single byte 0xE9) used
    twice: the second picture's name keeps every byte that fits; none is taken for the
    first half of a UTF-8 character and dropped."""
    out = tmp_path / "out"
    target = out / os.fsdecode(name)

    first = atomic_write_bytes(target, b"one", within=out, keep_existing=True)
    other = atomic_write_bytes(target, b"two", within=out, keep_existing=True)

    assert os.fsencode(first.path.name) == name
    assert os.fsencode(other.path.name) == second
    assert other.path.read_bytes() == b"two"


def test_a_file_where_an_output_folder_belongs_is_reported_as_not_a_folder(
        tmp_path: Path) -> None:
    """A plain file in the place of a dated output folder (``out/2024``) fails the write
    with "not a directory", the error that says what to fix; it is never reported as a
    refused symbolic link (which the daemon would hold, waiting for the link to go)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "2024").write_bytes(b"notes")

    with pytest.raises(NotADirectoryError):
        atomic_write_bytes(out / "2024" / "06" / "IMG_1.jpg", b"picture", within=out)

    assert (out / "2024").read_bytes() == b"notes"
    assert [p.name for p in out.iterdir()] == ["2024"]


def test_a_read_error_mid_copy_is_reported_as_itself_and_leaves_nothing(
        tmp_path: Path) -> None:
    """A source that fails to read (a failing card: EIO; /proc/self/mem answers every read
    at offset 0 so) fails the copy with that I/O error, the one that says what went wrong,
    and leaves neither the target nor a temporary file behind."""
    out = tmp_path / "out"

    with pytest.raises(OSError) as failed:
        atomic_copy(Path("/proc/self/mem"), out / "IMG_6.jpg", within=out,
                    keep_existing=True)

    assert failed.value.errno == errno.EIO
    assert list(out.iterdir()) == []


def test_a_move_across_filesystems_keeps_an_identical_file_apart_like_a_rename(
        tmp_path: Path, other_fs: Path) -> None:
    """Moving a picture into a folder on another filesystem where its name already holds the
    same bytes (the same photo filed twice) keeps both, as a rename on one filesystem does:
    the moved one gets the next number and its own date; the one there is left as it was."""
    done = other_fs / "done"
    done.mkdir()
    (done / "IMG_7.jpg").write_bytes(b"the same photo")
    os.utime(done / "IMG_7.jpg", ns=(1_400_000_000_000_000_000, 1_400_000_000_000_000_000))
    source = tmp_path / "IMG_7.jpg"
    source.write_bytes(b"the same photo")
    os.utime(source, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))

    moved = move_no_clobber(source, done, within=done)

    assert moved == done / "IMG_7.1.jpg" and not source.exists()
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in done.iterdir()} == {
        "IMG_7.jpg": (b"the same photo", 1_400_000_000_000_000_000),
        "IMG_7.1.jpg": (b"the same photo", 1_500_000_000_000_000_000)}


@contextlib.contextmanager
def _unremovable(path: Path) -> Iterator[str]:
    """``path`` cannot be removed or renamed while inside: immutable for root
    (FS_IOC_SETFLAGS), its folder read-only for anyone else; yields the reason unlink(2)
    and rename(2) give."""
    if os.geteuid() != 0:
        os.chmod(path.parent, 0o555)
        try:
            yield os.strerror(errno.EACCES)
        finally:
            os.chmod(path.parent, 0o755)
        return
    get_flags, set_flags, immutable = 0x80086601, 0x40086602, 0x10
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            (flags,) = struct.unpack("i", fcntl.ioctl(fd, get_flags, struct.pack("i", 0)))
            fcntl.ioctl(fd, set_flags, struct.pack("i", flags | immutable))
        except OSError as exc:
            pytest.skip(f"{path.parent} cannot make a file immutable: {exc.strerror}")
        try:
            yield os.strerror(errno.EPERM)
        finally:
            fcntl.ioctl(fd, set_flags, struct.pack("i", flags))
    finally:
        os.close(fd)


def test_a_leftover_temporary_that_cannot_be_removed_is_named_and_the_rest_go(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The start after a kill -9 removes the temporary files it left, and counts them; one
    the filesystem will not let go is named in one warning, with the reason, and neither
    stops the clean-up of the others nor touches any other file."""
    out = tmp_path / "out"
    (out / "locked").mkdir(parents=True)
    (out / "2024").mkdir()
    stuck = out / "locked" / temp_name()
    leftovers = [out / temp_name(), out / "2024" / temp_name(), out / "2024" / temp_name()]
    for path in (stuck, *leftovers):
        path.write_bytes(b"half written")
    (out / "2024" / "IMG_1.jpg").write_bytes(b"a picture")

    with _unremovable(stuck) as reason, caplog.at_level(logging.WARNING,
                                                        logger="rotwatchd.output.atomic"):
        removed = remove_temporaries(out)

    assert removed == 3
    assert caplog.messages == [f"cannot remove leftover temporary file {stuck}: {reason}"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "2024/IMG_1.jpg", f"locked/{stuck.name}"]


@pytest.mark.parametrize("keep_existing", [False, True])
def test_linking_a_name_again_to_the_file_it_already_is_leaves_only_that_name(
        tmp_path: Path, keep_existing: bool) -> None:
    """The same upright picture hard-linked twice to one output name (a redo): the name
    still is the picture, and no temporary name is left beside it (rename(2) does nothing
    when both names are already one file)."""
    source = tmp_path / "IMG_8.jpg"
    source.write_bytes(b"upright picture")
    out = tmp_path / "out"

    first = atomic_link(source, out / "IMG_8.jpg", within=out, keep_existing=keep_existing)
    again = atomic_link(source, out / "IMG_8.jpg", within=out, keep_existing=keep_existing)

    assert first == Placed(out / "IMG_8.jpg", reused=False)
    assert again == Placed(out / "IMG_8.jpg", reused=keep_existing)
    assert [p.name for p in out.iterdir()] == ["IMG_8.jpg"]
    assert (out / "IMG_8.jpg").stat().st_ino == source.stat().st_ino


@pytest.mark.parametrize("keep_existing", [False, True])
def test_a_name_too_long_for_the_filesystem_fails_and_leaves_nothing(
        tmp_path: Path, keep_existing: bool) -> None:
    """An output name over NAME_MAX bytes (a 255-byte ``.jpg`` name given the ``.jpeg``
    extension) fails with ENAMETOOLONG, the error that says why, and leaves no temporary
    file in the folder."""
    out = tmp_path / "out"

    with pytest.raises(OSError) as failed:
        atomic_write_bytes(out / ("a" * 251 + ".jpeg"), b"picture", within=out,
                           keep_existing=keep_existing)

    assert failed.value.errno == errno.ENAMETOOLONG
    assert list(out.iterdir()) == []


def test_a_move_across_filesystems_whose_read_fails_leaves_nothing_behind(
        tmp_path: Path) -> None:
    """A move onto another filesystem copies: when reading the source fails (an I/O error:
    /proc/self/mem answers every read at offset 0 so) the move fails with that error and
    leaves no temporary file in the target folder."""
    done = tmp_path / "done"

    with pytest.raises(OSError) as failed:
        move_no_clobber(Path("/proc/self/mem"), done, within=done)

    assert failed.value.errno == errno.EIO
    assert list(done.iterdir()) == []


@pytest.mark.parametrize("linked", ["2024", "2024/06"])
def test_a_symlinked_output_folder_is_refused_naming_that_folder(tmp_path: Path,
                                                                 linked: str) -> None:
    """The refusal names the folder that is a link, at whatever depth, since that is the
    one the user must replace (and the one the daemon watches before it tries again)."""
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / linked).parent.mkdir(parents=True, exist_ok=True)
    (out / linked).symlink_to(elsewhere)

    with pytest.raises(UnsafeFolder) as refused:
        atomic_write_bytes(out / "2024" / "06" / "IMG_1.jpg", b"picture", within=out)

    assert refused.value.where == out / linked
    assert list(elsewhere.iterdir()) == []


def test_a_file_that_cannot_leave_its_folder_is_not_copied_instead(tmp_path: Path) -> None:
    """A picture its folder will not let go (immutable; a read-only inbox for a user) fails
    its move to quarantine with that error, and no copy of it appears there: the move is a
    copy only across filesystems, never a way around a refusal."""
    inbox, quarantine = tmp_path / "inbox", tmp_path / "quarantine"
    inbox.mkdir()
    (inbox / "scan.jpg").write_bytes(b"a scan")

    with _unremovable(inbox / "scan.jpg") as reason, pytest.raises(OSError) as refused:
        move_no_clobber(inbox / "scan.jpg", quarantine, within=quarantine)

    assert refused.value.strerror == reason
    assert list(quarantine.iterdir()) == []
    assert (inbox / "scan.jpg").read_bytes() == b"a scan"


def test_a_dangling_link_under_the_output_name_is_kept_and_the_picture_numbered(
        tmp_path: Path) -> None:
    """A symbolic link to nothing (a link to a drive not mounted now) named like the picture
    still takes that name: it is neither replaced nor written through; the picture written,
    or moved, there gets the next number."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "IMG_1.jpg").symlink_to(tmp_path / "unmounted" / "IMG_1.jpg")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "IMG_1.jpg").write_bytes(b"moved picture")

    written = atomic_write_bytes(out / "IMG_1.jpg", b"picture", within=out, keep_existing=True)
    moved = move_no_clobber(inbox / "IMG_1.jpg", out, within=out)

    assert written == Placed(out / "IMG_1.1.jpg", reused=False)
    assert moved == out / "IMG_1.2.jpg" and moved.read_bytes() == b"moved picture"
    assert os.readlink(out / "IMG_1.jpg") == str(tmp_path / "unmounted" / "IMG_1.jpg")
    assert not (tmp_path / "unmounted").exists()
