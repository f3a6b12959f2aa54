"""The journal: one SQLite row per (path, content hash) saying what happened to that file.

It is what makes re-sent events, restarts and rescans harmless: a file whose row has a final
outcome (done, review, quarantined) is never processed again; a row left ``in-progress`` by a
crash is processed again on the next start. Thread-safe: one connection behind a lock (SQLite
in WAL mode, so ``rotwatchd status`` can read while the daemon writes).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Outcome = Literal["in-progress", "done", "review", "quarantined", "error"]
OUTCOMES: Final = ("in-progress", "done", "review", "quarantined", "error")
FINAL_OUTCOMES: Final = frozenset({"done", "review", "quarantined"})
JOURNAL_NAME: Final = "journal.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER,
    mtime_ns    INTEGER,
    outcome     TEXT NOT NULL,
    correction  INTEGER,
    confidence  REAL,
    source      TEXT,
    output      TEXT,
    detail      TEXT,
    started_at  REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (path, sha256)
);
CREATE INDEX IF NOT EXISTS files_by_path ON files (path);
CREATE INDEX IF NOT EXISTS files_by_outcome ON files (outcome, finished_at);
"""


@dataclass(frozen=True)
class Record:
    """One journal row. ``source`` is ``exif`` or ``model`` when a correction was decided."""

    path: str
    sha256: str
    outcome: Outcome
    correction: int | None = None
    confidence: float | None = None
    source: str | None = None
    output: str | None = None
    detail: str | None = None
    started_at: float = 0.0
    finished_at: float | None = None


class Journal:
    """Open (creating if needed) the journal in ``state_dir``. Call :meth:`close` when done."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / JOURNAL_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_known_unchanged(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when ``path`` has a final row recorded with this size and mtime.

        Lets a rescan skip hashing thousands of already handled files.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM files WHERE path=? AND size=? AND mtime_ns=? AND outcome IN "
                "('done','review','quarantined') LIMIT 1", (path, size, mtime_ns)).fetchone()
        return row is not None

    def lookup(self, path: str, sha256: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                "SELECT path, sha256, outcome, correction, confidence, source, output, detail, "
                "started_at, finished_at FROM files WHERE path=? AND sha256=?",
                (path, sha256)).fetchone()
        return None if row is None else Record(*row)

    def needs_processing(self, path: str, sha256: str) -> bool:
        """False only when this exact content at this path already has a final outcome."""
        record = self.lookup(path, sha256)
        return record is None or record.outcome not in FINAL_OUTCOMES

    def begin(self, path: str, sha256: str, size: int, mtime_ns: int) -> bool:
        """Mark the file in progress. Returns True when a crash had left it in progress."""
        with self._lock:
            row = self._db.execute("SELECT outcome FROM files WHERE path=? AND sha256=?",
                                   (path, sha256)).fetchone()
            self._db.execute(
                "INSERT INTO files (path, sha256, size, mtime_ns, outcome, started_at) "
                "VALUES (?, ?, ?, ?, 'in-progress', ?) ON CONFLICT (path, sha256) DO UPDATE SET "
                "outcome='in-progress', size=excluded.size, mtime_ns=excluded.mtime_ns, "
                "started_at=excluded.started_at, finished_at=NULL, detail=NULL",
                (path, sha256, size, mtime_ns, time.time()))
        return row is not None and row[0] == "in-progress"

    def finish(self, path: str, sha256: str, outcome: Outcome, *, correction: int | None = None,
               confidence: float | None = None, source: str | None = None,
               output: str | None = None, detail: str | None = None,
               size: int | None = None, mtime_ns: int | None = None) -> None:
        """Record the final (or error) outcome of a file; creates the row if begin() was skipped."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO files (path, sha256, size, mtime_ns, outcome, correction, "
                "confidence, source, output, detail, started_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path, sha256) DO UPDATE "
                "SET outcome=excluded.outcome, correction=excluded.correction, "
                "confidence=excluded.confidence, source=excluded.source, "
                "output=excluded.output, detail=excluded.detail, "
                "finished_at=excluded.finished_at, size=coalesce(excluded.size, size), "
                "mtime_ns=coalesce(excluded.mtime_ns, mtime_ns)",
                (path, sha256, size, mtime_ns, outcome, correction, confidence, source, output,
                 detail, now, now))

    def interrupted(self) -> list[str]:
        """Paths a previous run left in progress (it crashed or was killed mid-file)."""
        with self._lock:
            rows = self._db.execute("SELECT path FROM files WHERE outcome='in-progress'")
            return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of rows per outcome (every outcome present, zeros included)."""
        with self._lock:
            rows = self._db.execute("SELECT outcome, count(*) FROM files GROUP BY outcome")
            found = dict(rows.fetchall())
        return {outcome: int(found.get(outcome, 0)) for outcome in OUTCOMES}

    def recent_problems(self, limit: int = 10) -> list[Record]:
        """The latest error and quarantined rows, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, sha256, outcome, correction, confidence, source, output, detail, "
                "started_at, finished_at FROM files WHERE outcome IN ('error','quarantined') "
                "ORDER BY finished_at DESC LIMIT ?", (limit,)).fetchall()
        return [Record(*row) for row in rows]
