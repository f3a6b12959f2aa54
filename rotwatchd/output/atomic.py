"""Atomic file primitives. Every byte rotwatchd writes goes through this module.

A target file either does not exist or is complete: data goes to a temporary file in the
target folder, is fsynced, then renamed over the final name, and the folder is fsynced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(target: Path, *, stat_from: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it atomically becomes ``target``.

    With ``stat_from``, that file's mtime/atime and permission bits are given to the temporary
    file before the rename, so ``target`` never appears with the wrong mtime.
    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".rwtmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if stat_from is not None:
            shutil.copystat(stat_from, tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: Path, data: bytes, *, stat_from: Path | None = None) -> None:
    """Write ``data`` to ``target`` atomically (see atomic_writer for ``stat_from``)."""
    with atomic_writer(target, stat_from=stat_from) as handle:
        handle.write(data)


def atomic_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically, keeping its mtime and permission bits."""
    with open(source, "rb") as src, atomic_writer(target, stat_from=source) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def atomic_link(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source``, atomically replacing any existing ``target``.

    Raises OSError (EXDEV across filesystems, EPERM where links are not allowed); callers
    fall back to atomic_copy.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.rwlink")
    os.link(source, tmp)
    try:
        os.replace(tmp, target)
        # rename(2) "does nothing" when both names are links to the same inode (target was
        # already a link to source): the temporary name would be left behind.
        if os.path.lexists(tmp):
            tmp.unlink()
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def unique_path(target: Path) -> Path:
    """``target`` if free, else ``name.1.ext``, ``name.2.ext``, ... (never overwrites)."""
    if not target.exists() and not target.is_symlink():
        return target
    n = 1
    while True:
        candidate = target.with_name(f"{target.stem}.{n}{target.suffix}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
        n += 1


def move_no_clobber(source: Path, target_dir: Path, name: str | None = None) -> Path:
    """Move ``source`` into ``target_dir`` without overwriting anything; returns the new path.

    Uses rename when on the same filesystem, else copy + fsync + unlink of the source.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    target = unique_path(target_dir / (name or source.name))
    try:
        os.rename(source, target)  # same filesystem: atomic
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: fall back to copy + delete
            raise
        atomic_copy(source, target)
        source.unlink()
    _fsync_dir(target_dir)
    return target
