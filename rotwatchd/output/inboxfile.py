"""An inbox file opened once: every later read, copy and check goes through that descriptor.

A name in the inbox can be swapped for a symlink (or a folder on its way for a symlinked one)
at any moment. :func:`open_inbox_file` opens each folder below the inbox from its parent's
handle and the file itself without following a link, and checks that it is the file that was
looked at (same device and inode). The hash, the decoding, the copy and the final move or
deletion of the original all use that handle, so whatever the name points to later, rotwatchd
reads and removes only the file it journaled.

Readers that want a path (Pillow, the writer) get :attr:`InboxFile.reader`, the descriptor's
``/proc/self/fd`` entry: opening it opens the very same file, never the name again (Linux).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from rotwatchd.output.atomic import UnsafeFolder, open_folder


class Replaced(OSError):
    """The name no longer is the file that was looked at (swapped, replaced, now a link)."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(errno.ESTALE, f"{path}: {why}")

    def __str__(self) -> str:
        return str(self.strerror)


class InboxFile:
    """A regular inbox file held open; use as a context manager (closes both handles)."""

    def __init__(self, path: Path, dir_fd: int, fd: int, st: os.stat_result) -> None:
        self.path = path  # its name, for logs and the journal
        self.dir_fd = dir_fd  # its folder, opened below the inbox without following links
        self.fd = fd
        self.st = st

    @property
    def reader(self) -> Path:
        """A path that opens this very file (not its name) for reading."""
        return Path(f"/proc/self/fd/{self.fd}")

    def digest(self) -> str:
        """sha256 of the content, read through the descriptor."""
        import hashlib  # here: fix and check (which import this module) never hash

        digest = hashlib.sha256()
        offset = 0
        while block := os.pread(self.fd, 1 << 20, offset):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def still_named(self) -> bool:
        """True while its name in its folder still is this file (same device and inode)."""
        try:
            now = os.stat(self.path.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return False
        return same_file(now, self.st)

    def unlink(self) -> None:
        """Delete the name, only if it still is this file. Raises Replaced, OSError."""
        if not self.still_named():
            raise Replaced(self.path, "replaced by another file meanwhile: not deleted")
        os.unlink(self.path.name, dir_fd=self.dir_fd)

    def close(self) -> None:
        for fd in (self.fd, self.dir_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> InboxFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_ignored(relative: Path, patterns: Iterable[str]) -> bool:
    """True when any component of ``relative`` matches an ignore glob (temp/hidden names)."""
    return any(fnmatch.fnmatchcase(part, glob) for part in relative.parts for glob in patterns)


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def open_inbox_file(path: Path, inbox: Path, expected: os.stat_result | None = None) -> InboxFile:
    """Open ``path`` (a file below ``inbox``) once, safely; ``expected`` is what an earlier
    lstat saw and must still be the same file.

    Raises Replaced (a link now, or another file), UnsafeFolder (a symlinked folder on the
    way), FileNotFoundError, IsADirectoryError (not a regular file), OSError."""
    try:
        relative = path.parent.relative_to(inbox)
    except ValueError:
        raise UnsafeFolder(path.parent) from None
    dir_fd = open_folder(inbox, relative, create=False)
    try:
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Replaced(path, "is now a symbolic link") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (expected is not None and not same_file(st,
                                                                                   expected)):
            os.close(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, f"{path} is not a regular file")
            raise Replaced(path, "replaced by another file while being looked at")
    except BaseException:
        os.close(dir_fd)
        raise
    return InboxFile(path, dir_fd, fd, st)
