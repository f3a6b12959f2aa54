"""Where a source file goes besides the output: quarantine, review, done folder, or away.

All moves and copies use the atomic primitives of ``rotwatchd/output/atomic.py``, never
overwrite anything (a taken name gets a number) and never leave their folder (a symlinked
folder below it is refused). A symlink is moved as a link and never followed; when a
move would need a copy across filesystems (which would follow it), the link is left in place
and the caller records that in the journal instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rotwatchd.output.atomic import Placed, atomic_copy, move_no_clobber, open_folder
from rotwatchd.output.inboxfile import InboxFile


class CannotMove(Exception):
    """The file could not be moved; ``str(exc)`` says why. Nothing was changed."""


def relative_to_inbox(path: Path, inbox: Path) -> Path:
    """``path`` relative to its inbox (just the name if it is not inside it)."""
    try:
        return path.relative_to(inbox)
    except ValueError:
        return Path(path.name)


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def move_into(path: Path, folder: Path, relative: Path, *, source: InboxFile | None = None,
              inbox: Path | None = None) -> Path:
    """Move ``path`` to ``folder/relative`` (``.1``, ``.2`` suffix if taken); returns where.

    Nothing is moved outside ``folder`` (a symlinked folder below it is refused). ``source``
    (the file as opened) makes sure the name still is that file and moves it from its own
    folder handle; else ``inbox`` opens ``path``'s folder from the inbox without following
    links. Raises CannotMove (permissions, a symlink that would need a cross-device copy, a
    symlinked folder, a file replaced meanwhile...)."""
    target_dir = (folder / relative).parent
    dir_fd: int | None = None
    try:
        if source is not None:
            if not source.still_named():
                raise CannotMove("it was replaced by another file meanwhile")
            src_fd = source.dir_fd
        elif inbox is not None:
            src_fd = dir_fd = open_folder(inbox, relative.parent, create=False)
        else:
            src_fd = dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        st = os.stat(path.name, dir_fd=src_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            source_dev = os.fstat(src_fd).st_dev
            if os.stat(_nearest_existing(target_dir)).st_dev != source_dev:
                raise CannotMove("the link would have to be copied across filesystems")
        return move_no_clobber(path, target_dir, relative.name, within=folder,
                               source_dir_fd=src_fd)
    except OSError as exc:
        raise CannotMove(exc.strerror or str(exc)) from None
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def copy_into(path: Path, folder: Path, relative: Path, *, reader: Path | None = None) -> Placed:
    """Copy ``path`` (read through ``reader`` when given: see InboxFile) to
    ``folder/relative`` atomically; returns where. Never overwrites: a taken name gets a
    number, unless it already holds the same bytes (then it is reused, nothing is written).

    Raises OSError (UnsafeFolder among them) when reading or writing fails."""
    return atomic_copy(reader or path, folder / relative, within=folder, keep_existing=True)


def dispose_original(path: Path, policy: str, done_dir: Path | None, relative: Path, *,
                     source: InboxFile | None = None) -> str:
    """Apply ``output.original`` after the upright copy is safely on disk.

    ``keep`` leaves it, ``move`` moves it under ``done_dir``, ``delete`` unlinks it; with
    ``source`` (the file as opened) only if its name still is that file. Returns a short
    phrase for the log. Raises CannotMove / OSError; the output exists either way.
    """
    if policy == "move":
        assert done_dir is not None
        return f"original moved to {move_into(path, done_dir, relative, source=source)}"
    if policy == "delete":
        if source is not None:
            source.unlink()
        else:
            path.unlink()
        return "original deleted"
    return "original kept"
