"""Where a source file goes besides the output: quarantine, review, done folder, or away.

All moves and copies use the atomic primitives of ``rotwatchd/output/atomic.py`` and never
overwrite anything (``unique_path``). A symlink is moved as a link and never followed; when a
move would need a copy across filesystems (which would follow it), the link is left in place
and the caller records that in the journal instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from rotwatchd.output.atomic import atomic_copy, move_no_clobber, unique_path


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


def move_into(path: Path, folder: Path, relative: Path) -> Path:
    """Move ``path`` to ``folder/relative`` (``.1``, ``.2`` suffix if taken); returns where.

    Raises CannotMove (permissions, a symlink that would need a cross-device copy...).
    """
    target_dir = (folder / relative).parent
    try:
        if path.is_symlink():
            source_dev = os.lstat(path.parent).st_dev
            if os.stat(_nearest_existing(target_dir)).st_dev != source_dev:
                raise CannotMove("the link would have to be copied across filesystems")
        return move_no_clobber(path, target_dir, relative.name)
    except OSError as exc:
        raise CannotMove(exc.strerror or str(exc)) from None


def copy_into(path: Path, folder: Path, relative: Path) -> Path:
    """Copy ``path`` to ``folder/relative`` atomically without overwriting; returns where.

    Raises OSError when reading or writing fails.
    """
    target = unique_path(folder / relative)
    atomic_copy(path, target)
    return target


def dispose_original(path: Path, policy: str, done_dir: Path | None, relative: Path) -> str:
    """Apply ``output.original`` after the upright copy is safely on disk.

    ``keep`` leaves it, ``move`` moves it under ``done_dir``, ``delete`` unlinks it. Returns a
    short phrase for the log. Raises CannotMove / OSError; the output exists either way.
    """
    if policy == "move":
        assert done_dir is not None
        return f"original moved to {move_into(path, done_dir, relative)}"
    if policy == "delete":
        path.unlink()
        return "original deleted"
    return "original kept"
