"""The record of a resumable ``fix`` run: one SQLite file under the output folder.

``rotwatchd fix --engine ray`` records every file's outcome here (content hash, decision,
where its copy went) as results arrive, so that a run started again after an interruption
does only what is left. Only the driver writes it (one process, holding :class:`RunLock`);
workers on other machines never open it, so it also works on a shared folder where SQLite's
locking between hosts is not to be trusted. Anyone may read it while a run goes on
(``rotwatchd fix --status OUTDIR``).

Both files start with a dot: ``fix`` and the daemon skip hidden names, so an output folder
given as input later never treats them as pictures.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rotwatchd.output.lock import LockHeld, ProcessLock, lock_held

RECORD_NAME = ".rotwatchd-fix.sqlite"
LOCK_NAME = ".rotwatchd-fix.lock"

#: Outcomes (rotwatchd.fix.oneshot.FileOutcome kinds) in the order tables show them, with labels.
OUTCOME_LABELS = {"written": "written", "unchanged": "already there (nothing written)",
                  "review": "to review", "failed": "failed",
                  "skipped": "skipped (not images)"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,      -- the input file, absolute
    relative TEXT NOT NULL,       -- its name below OUTDIR (and OUTDIR/review)
    size INTEGER, mtime_ns INTEGER, sha256 TEXT,
    outcome TEXT NOT NULL,        -- written, unchanged, review, failed, skipped
    action TEXT, correction INTEGER, confidence REAL, decided_by TEXT,
    output TEXT, message TEXT NOT NULL,
    run INTEGER NOT NULL, finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, started REAL NOT NULL, finished REAL,
    files INTEGER NOT NULL,       -- every file named by the inputs
    todo INTEGER NOT NULL         -- those left to do when it started
);
"""


class FixRunning(Exception):
    """Another ``fix`` holds this output folder's record."""


class RunLock(ProcessLock):
    """An exclusive lock on ``outdir``'s record for one driver (released when the process
    ends, however it ends). Raises FixRunning when another process holds it."""

    def __init__(self, outdir: Path) -> None:
        super().__init__(outdir / LOCK_NAME)

    def __enter__(self) -> RunLock:
        try:
            self.acquire()
        except LockHeld:
            raise FixRunning(f"another rotwatchd fix is writing to {self.path.parent}") from None
        return self


def run_in_progress(outdir: Path) -> bool:
    """True while some process holds ``outdir``'s RunLock."""
    return lock_held(outdir / LOCK_NAME)


@dataclass(frozen=True)
class FileRecord:
    """One file's outcome, as the driver stores it."""

    source: str
    relative: str
    size: int
    mtime_ns: int
    sha256: str
    outcome: str
    message: str
    output: str | None = None
    action: str | None = None
    correction: int | None = None
    confidence: float | None = None
    decided_by: str | None = None


class FixRecord:
    """``OUTDIR/.rotwatchd-fix.sqlite``. ``readonly`` opens an existing record only (for
    ``--status``; raises FileNotFoundError when there is none). Raises sqlite3.Error when the
    file cannot be used."""

    def __init__(self, outdir: Path, *, readonly: bool = False) -> None:
        self.path = outdir / RECORD_NAME
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"no fix record in {outdir}")
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=30)
        else:
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.executescript(_SCHEMA)
        self._run: int | None = None

    def __enter__(self) -> FixRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def left_to_do(self, files: Iterable[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
        """The ``(file, relative)`` pairs this record does not settle: never recorded,
        recorded as failed (tried again: a full disk may have been the cause), or changed
        since (size or mtime)."""
        settled = {source: (size, mtime) for source, size, mtime in self._db.execute(
            "SELECT source, size, mtime_ns FROM files WHERE outcome != 'failed'")}
        left = []
        for path, relative in files:
            known = settled.get(str(path))
            if known is not None:
                try:
                    st = path.stat()
                except OSError:
                    st = None
                if st is not None and known == (st.st_size, st.st_mtime_ns):
                    continue
            left.append((path, relative))
        return left

    def begin_run(self, engine: str, files: int, todo: int) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO runs (engine, started, files, todo) VALUES (?, ?, ?, ?)",
                (engine, time.time(), files, todo))
        self._run = int(cursor.lastrowid or 0)
        return self._run

    def end_run(self) -> None:
        with self._db:
            self._db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), self._run))

    def add(self, records: Iterable[FileRecord]) -> None:
        """Store these outcomes (replacing earlier ones for the same source) in one commit."""
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO files (source, relative, size, mtime_ns, sha256, "
                "outcome, action, correction, confidence, decided_by, output, message, run, "
                "finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.source, r.relative, r.size, r.mtime_ns, r.sha256, r.outcome, r.action,
                  r.correction, r.confidence, r.decided_by, r.output, r.message,
                  self._run or 0, now) for r in records])

    def counts(self, run: int | None = None) -> dict[str, int]:
        """Files by outcome, every outcome present (0 when none); of one run, or of all."""
        where, args = ("WHERE run = ?", (run,)) if run is not None else ("", ())
        found = dict(self._db.execute(
            f"SELECT outcome, COUNT(*) FROM files {where} GROUP BY outcome", args))
        return {kind: int(found.get(kind, 0)) for kind in OUTCOME_LABELS}

    def failures(self, limit: int = 10) -> Iterator[tuple[str, str]]:
        """(source, message) of the failed files, most recent first."""
        yield from self._db.execute(
            "SELECT source, message FROM files WHERE outcome = 'failed' "
            "ORDER BY finished DESC LIMIT ?", (limit,))

    def last_run(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT id, engine, started, finished, files, todo FROM runs "
                               "ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        keys = ("id", "engine", "started", "finished", "files", "todo")
        return dict(zip(keys, row, strict=True))


def status_document(outdir: Path) -> dict[str, Any]:
    """What ``fix --status`` shows: whether a run holds the folder, the last run and its
    progress, counts by outcome over every file recorded, the latest failures. Raises
    FileNotFoundError when ``outdir`` has no record, sqlite3.Error when it is unreadable."""
    with FixRecord(outdir, readonly=True) as record:
        run = record.last_run()
        return {"outdir": str(outdir), "running": run_in_progress(outdir), "last_run": run,
                "done_in_last_run": sum(record.counts(run["id"]).values()) if run else 0,
                "counts": record.counts(), "failures": list(record.failures())}


def format_counts(counts: dict[str, int]) -> list[str]:
    """The table of outcomes: one line each, then the total."""
    width = max(len(label) for label in OUTCOME_LABELS.values())
    lines = [f"  {OUTCOME_LABELS[kind]:<{width}} {counts.get(kind, 0):>8}"
             for kind in OUTCOME_LABELS]
    lines.append(f"  {'total':<{width}} {sum(counts.values()):>8}")
    return lines


def format_status(document: dict[str, Any]) -> str:
    """``status_document`` as text for a person."""
    run = document["last_run"]
    lines = [f"{document['outdir']}: "
             + ("a fix is running" if document["running"] else "no fix running")]
    if run is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started"]))
        state = "running" if document["running"] else (
            "finished" if run["finished"] else "interrupted")
        lines.append(f"last run: #{run['id']} ({run['engine']}), started {started}, {state}: "
                     f"{document['done_in_last_run']} of the {run['todo']} files left at its "
                     f"start done ({run['files']} files in its inputs)")
    lines.append("every file recorded, by outcome:")
    lines.extend(format_counts(document["counts"]))
    for source, message in document["failures"]:
        lines.append(f"failed: {source}: {message.removeprefix('FAILED ')}")
    return "\n".join(lines)
