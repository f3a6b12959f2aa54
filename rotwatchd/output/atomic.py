"""Atomic file primitives. Every byte rotwatchd writes goes through this module.

A target file either does not exist or is complete: data goes to a temporary file in the
target folder, is fsynced, then renamed to the final name, and the folder is fsynced.

Nothing leaves its folder: with ``within`` (the configured output, review, quarantine or done
folder) every folder below it is opened, or created, from its parent's handle without
following symbolic links, and a symlinked component is refused (:class:`UnsafeFolder`); the
temporary file and the rename are made relative to the final folder's handle.

With ``keep_existing`` nothing is ever replaced: a name that holds a different content makes
the new one ``name.1.ext``, ``name.2.ext``...; a name that already holds exactly these bytes is
reused and nothing is written (the same picture again, or a redo after a crash).

Temporary names are short (``.rw-<16 hex>.rwtmp``) so that a 255-byte name still works, and
:func:`remove_temporaries` recognises them (and the longer ones of earlier versions) to clean
up after a kill -9.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

NAME_MAX = 255
_TEMP = re.compile(r"\.rw-[0-9a-f]{16}\.rwtmp")
_OLD_TEMP = re.compile(r"\..+\.(?:[a-z0-9_]{8}\.rwtmp|[0-9a-f]{12}\.rwlink)", re.DOTALL)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Choosing a free name and taking it is one step for every thread of this process.
_NAMES_LOCK = threading.Lock()


class UnsafeFolder(OSError):
    """A folder on the way is a symbolic link (or ``..``): it is not followed, nothing was
    read or written through it. ``where`` is that folder."""

    def __init__(self, where: Path) -> None:
        super().__init__(errno.ELOOP, f"{where} is a symbolic link (or leaves its folder): "
                                      "not followed")
        self.where = where

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class Placed:
    """Where a file ended up; ``reused`` when that name already held exactly these bytes."""

    path: Path
    reused: bool


def temp_name() -> str:
    """A fresh temporary name (33 bytes, whatever the final name's length)."""
    return f".rw-{os.urandom(8).hex()}.rwtmp"  # secrets.token_hex, without its imports


def is_temp_name(name: str) -> bool:
    """True for the temporary names this module makes (or made in earlier versions)."""
    return bool(_TEMP.fullmatch(name) or _OLD_TEMP.fullmatch(name))


def numbered_name(name: str, n: int) -> str:
    """``name`` (n = 0) or ``stem.n.ext``; the stem is shortened by whole characters (a byte
    of a name that is not UTF-8 counts as one), as few as needed, so that the result still
    fits in NAME_MAX bytes."""
    if n == 0:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # no extension (or a leading-dot name): the number goes at the end
        stem, dot, suffix = name, "", ""
    tail = f".{n}{dot}{suffix}"
    room = NAME_MAX - len(os.fsencode(tail))
    while stem and len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return stem + tail


# --- folders -----------------------------------------------------------------------------


def open_folder(root: Path, relative: Path | str = ".", *, create: bool = True) -> int:
    """A handle (fd, caller closes) on ``root/relative``; every component below ``root`` is
    opened (or created, with ``create``) from its parent's handle without following a link.

    ``root`` itself is the configured folder and may be a link. Raises UnsafeFolder when a
    component is a symbolic link or ``..``, OSError otherwise (ENOTDIR, EACCES...)."""
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, _DIR_FLAGS)
    here = root
    try:
        for part in Path(relative).parts:
            here = here / part
            if part in ("..", "/") or os.sep in part:
                raise UnsafeFolder(here)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            try:
                inner = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(part, fd):
                    raise UnsafeFolder(here) from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _split(target: Path, within: Path | None) -> tuple[Path, Path]:
    """(root, relative folder) of ``target``; raises UnsafeFolder when it is not below root."""
    if within is None:
        return target.parent, Path(".")
    try:
        return within, target.parent.relative_to(within)
    except ValueError:
        raise UnsafeFolder(target.parent) from None


@contextlib.contextmanager
def target_folder(target: Path, within: Path | None = None) -> Iterator[int]:
    """The handle of ``target``'s folder, opened safely below ``within`` (created if needed)."""
    root, relative = _split(target, within)
    fd = open_folder(root, relative)
    try:
        yield fd
    finally:
        os.close(fd)


# --- writing -----------------------------------------------------------------------------


def _copy_stat(source: Path, fd: int) -> None:
    """``source``'s times, permission bits and (best effort) extended attributes onto ``fd``.

    Attributes the source's filesystem will not list are skipped with a warning (silently
    where it has none at all, ENOTSUP); one the target refuses is skipped. Raises OSError
    when the times or permission bits cannot be read or set."""
    st = os.stat(source)
    try:
        names = os.listxattr(source)
    except OSError as exc:
        names = []
        if exc.errno != errno.ENOTSUP:
            log.warning("%s: its extended attributes cannot be listed (%s); copied without "
                        "them", source, exc.strerror or exc)
    for name in names:
        with contextlib.suppress(OSError):
            os.setxattr(fd, name, os.getxattr(source, name))
    os.chmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _same_content(dir_fd: int, a: str, b: str) -> bool:
    """True when regular files ``a`` and ``b`` (names in ``dir_fd``) hold the same bytes;
    False when either is something else or cannot be opened (a symbolic link, no permission):
    what cannot be compared is never taken for the same."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with contextlib.ExitStack() as stack:
        def opened(name: str) -> int:
            fd = os.open(name, flags, dir_fd=dir_fd)
            stack.callback(os.close, fd)
            return fd

        try:
            fa, fb = opened(a), opened(b)
        except OSError:
            return False
        sa, sb = os.fstat(fa), os.fstat(fb)
        if not (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)):
            return False
        if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
            return True
        if sa.st_size != sb.st_size:
            return False
        offset = 0
        while True:
            block_a, block_b = os.pread(fa, 1 << 20, offset), os.pread(fb, 1 << 20, offset)
            if block_a != block_b:
                return False
            if not block_a:
                return True
            offset += len(block_a)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def place(dir_fd: int, tmp: str, name: str, *, keep_existing: bool,
          dedupe: bool = True) -> tuple[str, bool]:
    """Give the finished temporary file ``tmp`` its final name in ``dir_fd``; returns
    (name taken, reused). Without ``keep_existing`` it replaces ``name``; with it, the first of
    ``name``, ``name.1``... that is free or (``dedupe``) already holds the same bytes."""
    if not keep_existing:
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        # rename(2) "does nothing" when both names are links to the same inode
        if _exists(tmp, dir_fd):
            os.unlink(tmp, dir_fd=dir_fd)
        return name, False
    with _NAMES_LOCK:
        n = 0
        while True:
            candidate = numbered_name(name, n)
            if not _exists(candidate, dir_fd):
                os.rename(tmp, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                return candidate, False
            if dedupe and _same_content(dir_fd, tmp, candidate):
                os.unlink(tmp, dir_fd=dir_fd)
                return candidate, True
            n += 1


def _write_placed(target: Path, fill: Callable[[BinaryIO], None], *,
                  stat_from: Path | None, within: Path | None,
                  keep_existing: bool) -> Placed:
    with target_folder(target, within) as dir_fd:
        tmp = temp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666,
                     dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
                handle.flush()
                if stat_from is not None:
                    _copy_stat(stat_from, handle.fileno())
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        name, reused = _place_synced(dir_fd, tmp, target.name, keep_existing)
    return Placed(target.with_name(name), reused)


def _place_synced(dir_fd: int, tmp: str, name: str, keep_existing: bool) -> tuple[str, bool]:
    """:func:`place` the finished temporary file, then fsync the folder; on any error the
    temporary file is removed (the target name is never left half done)."""
    try:
        placed = place(dir_fd, tmp, name, keep_existing=keep_existing)
        os.fsync(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return placed


def atomic_write_bytes(target: Path, data: bytes | Sequence[bytes | memoryview], *,
                       stat_from: Path | None = None, within: Path | None = None,
                       keep_existing: bool = False) -> Placed:
    """Write ``data`` to ``target`` atomically (see the module docstring for ``within`` and
    ``keep_existing``); ``data`` may be a sequence of pieces, written one after the other
    (no joined copy of a large file is made). With ``stat_from``, that file's times and
    permission bits are given to the temporary file before the rename, so ``target`` never
    appears with the wrong mtime. On an error the temporary file is removed and ``target`` is
    left untouched. Raises OSError (UnsafeFolder among them)."""
    pieces = (data,) if isinstance(data, bytes) else data

    def fill(handle: BinaryIO) -> None:
        for piece in pieces:
            handle.write(piece)

    return _write_placed(target, fill, stat_from=stat_from, within=within,
                         keep_existing=keep_existing)


def atomic_copy(source: Path, target: Path, *, within: Path | None = None,
                keep_existing: bool) -> Placed:
    """Copy ``source`` to ``target`` atomically, keeping its mtime and permission bits
    (``keep_existing``, always said: see the module docstring)."""
    with open(source, "rb") as src:
        def fill(handle: BinaryIO) -> None:
            while block := src.read(1 << 20):
                handle.write(block)

        return _write_placed(target, fill, stat_from=source, within=within,
                             keep_existing=keep_existing)


def atomic_link(source: Path, target: Path, *, within: Path | None = None,
                keep_existing: bool) -> Placed:
    """Make ``target`` a hard link to ``source`` (``keep_existing``, always said: see the
    module docstring).

    Raises OSError (EXDEV across filesystems, EPERM where links are not allowed); callers
    fall back to atomic_copy."""
    with target_folder(target, within) as dir_fd:
        tmp = temp_name()
        os.link(source, tmp, dst_dir_fd=dir_fd)
        name, reused = _place_synced(dir_fd, tmp, target.name, keep_existing)
    return Placed(target.with_name(name), reused)


# --- moving ------------------------------------------------------------------------------


def move_no_clobber(source: Path, target_dir: Path, name: str | None = None, *,
                    within: Path | None = None, source_dir_fd: int | None = None) -> Path:
    """Move ``source`` into ``target_dir`` without overwriting anything; returns the new path.

    ``within``: see the module docstring. ``source_dir_fd``: the handle of ``source``'s folder
    (its name is then ``source.name`` there), so that a swapped folder cannot redirect the
    move. Uses rename when on the same filesystem, else copy + fsync + unlink of the source.
    Raises OSError, UnsafeFolder."""
    own_fd = source_dir_fd is None
    src_fd = os.open(source.parent, _DIR_FLAGS) if source_dir_fd is None else source_dir_fd
    try:
        with target_folder(target_dir / (name or source.name), within) as dir_fd:
            wanted = name or source.name
            try:
                with _NAMES_LOCK:
                    taken = _free_name(dir_fd, wanted)
                    os.rename(source.name, taken, src_dir_fd=src_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                taken = _copy_across(src_fd, source.name, dir_fd, wanted)
            os.fsync(dir_fd)
    finally:
        if own_fd:
            os.close(src_fd)
    return target_dir / taken


def _free_name(dir_fd: int, name: str) -> str:
    n = 0
    while _exists(numbered_name(name, n), dir_fd):
        n += 1
    return numbered_name(name, n)


def _copy_across(src_fd: int, name: str, dir_fd: int, wanted: str) -> str:
    """Copy ``name`` (never following a link) into ``dir_fd`` under a free name, then remove
    the source if it is still the file that was copied."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        tmp = temp_name()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666,
                      dir_fd=dir_fd)
        try:
            with os.fdopen(out, "wb") as handle:
                while block := src.read(1 << 20):
                    handle.write(block)
                handle.flush()
                os.chmod(handle.fileno(), stat.S_IMODE(st.st_mode))
                os.utime(handle.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
                os.fsync(handle.fileno())
            taken, _ = place(dir_fd, tmp, wanted, keep_existing=True, dedupe=False)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    now = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
    if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
        os.unlink(name, dir_fd=src_fd)
    return taken


# --- cleaning up -------------------------------------------------------------------------


def remove_temporaries(folder: Path) -> int:
    """Remove this module's temporary files left under ``folder`` by a killed process (never
    following a symlinked folder); returns how many. Only for folders no other rotwatchd
    writes to at this moment."""
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(folder, onerror=lambda exc: None):
        for name in filter(is_temp_name, filenames):
            path = os.path.join(dirpath, name)
            try:
                os.unlink(path)
            except OSError as exc:
                log.warning("cannot remove leftover temporary file %s: %s", path,
                            exc.strerror or exc)
            else:
                removed += 1
    return removed
