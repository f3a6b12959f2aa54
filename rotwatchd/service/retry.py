"""When to try a failed write again: back-off delays and a cheap readiness check.

A write that failed for want of space or permission (disk full, a read-only mount, a folder
made unwritable) is tried again as soon as the folder could take it: :func:`output_ready` is
checked with a doubling back-off (the settler's hold), and only then is the file processed
again, so the model does not run in between. Pure decisions; filesystem calls are injected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rotwatchd.watch.settle import READY_CHECK_MAX

#: First pause after a failed write; doubles with every failed attempt, up to READY_CHECK_MAX.
RETRY_FIRST = 2.0
#: Processing attempts that failed although the folder looked writable; then the file waits
#: for the next rescan (something other than space or permission is wrong).
MAX_ATTEMPTS = 8
#: Most room asked for beyond the input file's size (metadata, re-encoding).
SPACE_MARGIN = 1 << 20
#: Least room asked for beyond the input file's size (one block, the folder entry).
SPACE_FLOOR = 4096


def retry_delay(attempt: int) -> float:
    """Seconds before attempt number ``attempt`` + 1 (``attempt`` >= 1 failed so far)."""
    return float(min(RETRY_FIRST * 2 ** max(attempt - 1, 0), READY_CHECK_MAX))


def room_needed(size: int) -> int:
    """Free bytes to wait for before writing the copy of a ``size``-byte input again: the
    input twice over (a re-encoded copy may be larger), at most ``size`` + SPACE_MARGIN. Asking
    for a fixed megabyte more would keep a small file waiting for ever on a volume with room for
    it but less than a megabyte free in all (a small card, a quota, a tmpfs)."""
    return size + min(max(size, SPACE_FLOOR), SPACE_MARGIN)


def failed_folder(exc: OSError, default: Path) -> Path:
    """The folder a failed write went to: the one ``exc.filename`` names or lies in, else
    ``default`` (ENOSPC from write() names no file)."""
    name = exc.filename
    if not isinstance(name, str | bytes | os.PathLike):
        return default
    path = Path(os.fsdecode(name))
    return path if path.is_dir() else path.parent


def output_ready(folder: Path, need: int, *,
                 statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
                 access: Callable[[Path, int], bool] = os.access) -> bool:
    """True when ``folder`` (or its nearest existing parent, for a folder not yet created) is
    on a file system mounted read-write with ``need`` bytes free, and writable for us."""
    here = folder
    while True:
        try:
            st = statvfs(here)
            break
        except FileNotFoundError:
            if here.parent == here:
                return False
            here = here.parent
        except OSError:
            return False
    if st.f_flag & os.ST_RDONLY or st.f_bavail * st.f_frsize < need:
        return False
    return access(here, os.W_OK | os.X_OK)
