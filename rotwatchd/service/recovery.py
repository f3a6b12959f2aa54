"""What a start does after a kill -9: remove temporary files, complete half-recorded moves.

Files still in the inbox need nothing here: their rows are in progress and the startup rescan
redoes them (a redo reuses an output or review copy that already holds the same bytes). What a
redo cannot reach is a file that already left the inbox: a quarantine move or an original moved
or deleted after its output was written, with the process killed before the journal said so.
Their rows carry the intent (journaled first), which is completed here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from pathlib import Path

from rotwatchd.config import Config, InboxConfig
from rotwatchd.output.atomic import remove_temporaries
from rotwatchd.output.filing import relative_to_inbox
from rotwatchd.service.journal import Journal, Record

log = logging.getLogger(__name__)


def written_folders(config: Config) -> list[Path]:
    """Every folder rotwatchd writes into (outputs, review, quarantine, done, its state),
    once each."""
    folders: list[Path] = [config.state_dir]
    for inbox in config.inboxes:
        folders += [inbox.output, inbox.review, inbox.quarantine]
    if config.output.done_dir is not None:
        folders.append(config.output.done_dir)
    return list(dict.fromkeys(folders))


def clean_temporaries(config: Config) -> int:
    """Remove the temporary files a killed run left in the folders it writes; logs how many."""
    removed = sum(remove_temporaries(folder) for folder in written_folders(config)
                  if folder.is_dir())
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)
    return removed


def complete_interrupted(config: Config, journal: Journal) -> int:
    """Finish the in-progress rows whose file has left its inbox; returns how many."""
    completed = 0
    for record in journal.interrupted_records():
        path = Path(record.path)
        if _still_there(path, record):
            continue  # still in the inbox: the rescan redoes it
        inbox = _inbox_of(config, path)
        if record.intent == "dispose" and record.output is not None:
            journal.finish(record.path, record.sha256, "done", output=record.output,
                           detail=f"{record.detail}; completed after a restart")
            log.info("%s -> %s (recorded after a restart: the original had already been "
                     "moved or deleted)", path, record.output)
        elif record.intent == "quarantine" and inbox is not None:
            _complete_quarantine(journal, record, inbox)
        else:
            journal.finish(record.path, record.sha256, "error",
                           detail="left the inbox while a previous run was processing it")
            log.warning("%s left the inbox while a previous run was processing it", path)
        completed += 1
    return completed


def _still_there(path: Path, record: Record) -> bool:
    """True while ``path`` is the row's file (another file under its name does not count)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: leave the row to the redo
    return record.inode is None or st.st_ino == record.inode


def _complete_quarantine(journal: Journal, record: Record, inbox: InboxConfig) -> None:
    relative = relative_to_inbox(Path(record.path), inbox.path)
    moved = _find_moved(inbox.quarantine / relative, record)
    where = f"moved to {moved}" if moved is not None else "not found in the quarantine folder"
    journal.finish(record.path, record.sha256, "quarantined",
                   output=str(moved) if moved is not None else None,
                   detail=f"{record.detail}; {where} (recorded after a restart)")
    log.warning("quarantined %s: %s; %s (recorded after a restart)", record.path,
                record.detail, where)


def _inbox_of(config: Config, path: Path) -> InboxConfig | None:
    for inbox in config.inboxes:
        if path.is_relative_to(inbox.path):
            return inbox
    return None


def _find_moved(wanted: Path, record: Record) -> Path | None:
    """The file a quarantine move put at ``wanted`` or a numbered variant of it: the one with
    the journaled content, or for a file that could not be hashed the journaled inode (a
    rename keeps it)."""
    stem, dot, suffix = wanted.name.rpartition(".")
    if not stem:
        stem, dot, suffix = wanted.name, "", ""
    numbered = re.compile(re.escape(stem) + r"(?:\.\d+)?" + re.escape(dot + suffix))
    try:
        names = sorted(entry.name for entry in os.scandir(wanted.parent)
                       if numbered.fullmatch(entry.name))
    except OSError:
        return None
    real_digest = len(record.sha256) == 64  # else a pseudo digest (symlink, unreadable...)
    for name in names:
        candidate = wanted.parent / name
        try:
            st = os.lstat(candidate)
        except OSError:
            continue
        if real_digest:
            if stat.S_ISREG(st.st_mode) and _sha256(candidate) == record.sha256:
                return candidate
        elif record.inode is not None and st.st_ino == record.inode:
            return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
