"""The journal: one SQLite row per (path, content hash) saying what happened to that file.

It is what makes re-sent events, restarts and rescans harmless: a file whose row has a final
outcome (done, review, quarantined) is never processed again; a row left ``in-progress`` by a
crash is processed again on the next start. Before a step that cannot simply be redone (moving
a file to quarantine, moving or deleting an original) the row records its ``intent`` and, once
known, its output, so that a restart can complete a row whose file has already left the inbox.

Paths are stored as text, or as the raw bytes of the name when it is not valid UTF-8 (read back
as the same ``str``, undecodable bytes as surrogate escapes). Besides size and mtime a row keeps
the ctime and inode seen when the file was hashed: a file rewritten in place with its size and
mtime put back still has a new ctime, and is hashed again.

Thread-safe: one connection behind a lock (SQLite in WAL mode, so ``rotwatchd status`` can read
while the daemon writes).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

Outcome = Literal["in-progress", "done", "review", "quarantined", "error", "ignored",
                  "waiting"]
OUTCOMES: Final = ("in-progress", "done", "review", "quarantined", "error", "ignored", "waiting")
# "waiting": looks unfinished (truncated, corrupt) and stays in the inbox for its writer until
# unchanged for watch.unfinished_wait; not a problem yet, and looked at again
# "ignored": not an image and not named as one (a video, a sidecar, notes): left in the inbox
FINAL_OUTCOMES: Final = frozenset({"done", "review", "quarantined", "ignored"})
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
CREATE INDEX IF NOT EXISTS files_by_hash ON files (sha256);
CREATE TABLE IF NOT EXISTS reviews (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    review_copy TEXT NOT NULL,
    inbox       TEXT NOT NULL,
    guess       INTEGER,
    confidence  REAL,
    probs       TEXT,
    reason      TEXT,
    arrived_at  REAL NOT NULL,
    answer      INTEGER,
    settled_at  REAL,
    output      TEXT,
    UNIQUE (path, sha256)
);
CREATE INDEX IF NOT EXISTS reviews_waiting ON reviews (settled_at, arrived_at);
CREATE INDEX IF NOT EXISTS reviews_by_hash ON reviews (sha256, settled_at);
"""
# Columns added after the first release (added to older journals when opened).
_ADDED_COLUMNS: Final = (("ctime_ns", "INTEGER"), ("inode", "INTEGER"), ("intent", "TEXT"))
_RECORD_COLUMNS: Final = ("path, sha256, outcome, correction, confidence, source, output, "
                          "detail, started_at, finished_at, intent, inode")
# files whose correction is known exactly (a valid EXIF orientation or a person's answer) and
# whose upright output exists: what on-device adaptation learns from
_LABELLED: Final = "outcome='done' AND source IN ('exif','human') AND output IS NOT NULL"
_REVIEW_COLUMNS: Final = ("id, path, sha256, review_copy, inbox, guess, confidence, probs, "
                          "reason, arrived_at, answer, settled_at, output")


def _key(path: str | None) -> str | bytes | None:
    """A path as stored: text, or its bytes when it is not valid UTF-8 (surrogate escapes)."""
    if path is None:
        return None
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _text(value: str | bytes | None) -> str | None:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _message(detail: str | None) -> str | None:
    """Human text as stored: undecodable bytes of names quoted, never refused."""
    if detail is None:
        return None
    return detail.encode("utf-8", "backslashreplace").decode("utf-8")


def _record(row: tuple[object, ...]) -> Record:
    values = list(row)
    values[0], values[6] = _text(values[0]), _text(values[6])  # type: ignore[arg-type]
    return Record(*values)  # type: ignore[arg-type]


def _review_item(row: tuple[Any, ...]) -> ReviewItem:
    (item_id, path, sha256, copy, inbox, guess, confidence, probs, reason, arrived, answer,
     settled, output) = row
    probabilities = None
    if probs is not None:
        p0, p1, p2, p3 = (float(v) for v in json.loads(probs))
        probabilities = (p0, p1, p2, p3)
    return ReviewItem(id=item_id, path=os.fsdecode(path), sha256=sha256,
                      review_copy=os.fsdecode(copy), inbox=os.fsdecode(inbox), guess=guess,
                      confidence=confidence, probabilities=probabilities, reason=reason or "",
                      arrived_at=arrived, answer=answer, settled_at=settled, output=_text(output))


class JournalNotWritable(OSError):
    """The journal cannot be opened for writing (read-only file, folder or file system).

    ``str(exc)`` is one line naming the file and what to do."""


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
    intent: str | None = None  # "quarantine" or "dispose": see the module docstring
    inode: int | None = None


@dataclass(frozen=True)
class ReviewItem:
    """An image waiting for (or settled by) a person. ``guess`` is the model's clockwise
    correction in degrees (None when it had none: animated, unsupported format) and
    ``probabilities`` its four probabilities for corrections 0, 90, 180, 270; ``answer`` the
    person's correction once settled (0: upright as it is). Times are Unix seconds."""

    id: int
    path: str  # the original, in the inbox
    sha256: str
    review_copy: str  # its copy in the review folder
    inbox: str  # the inbox folder it arrived in
    guess: int | None
    confidence: float | None
    probabilities: tuple[float, float, float, float] | None
    reason: str
    arrived_at: float
    answer: int | None = None
    settled_at: float | None = None
    output: str | None = None


class Journal:
    """Open (creating if needed) the journal in ``state_dir``. Call :meth:`close` when done."""

    def __init__(self, state_dir: Path) -> None:
        """Raises JournalNotWritable when the journal exists but cannot be written: found
        here, once, rather than file by file while processing."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / JOURNAL_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
            for column, kind in _ADDED_COLUMNS:
                if column not in present:
                    self._db.execute(f"ALTER TABLE files ADD COLUMN {column} {kind}")
            self._probe_write()
        except sqlite3.Error as exc:
            self._db.close()
            raise JournalNotWritable(
                f"journal {self.path} cannot be written ({exc}); make the file "
                "and its folder writable for rotwatchd's user (owner, mode, chattr, mount) and "
                "start again") from None

    def _probe_write(self) -> None:
        """A write that changes nothing: a read-only file only fails on a real write."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM files WHERE 0")
        finally:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_known_unchanged(self, path: str, size: int, mtime_ns: int,
                           ctime_ns: int | None = None, inode: int | None = None) -> bool:
        """True when ``path`` has a final row recorded with this size and mtime (and, when
        given, this ctime and inode: a row without them does not count as unchanged).

        Lets a rescan skip hashing thousands of already handled files.
        """
        query = ("SELECT 1 FROM files WHERE path=? AND size=? AND mtime_ns=? AND outcome IN "
                 "('done','review','quarantined')")
        args: list[object] = [_key(path), size, mtime_ns]
        if ctime_ns is not None:
            query += " AND ctime_ns=?"
            args.append(ctime_ns)
        if inode is not None:
            query += " AND inode=?"
            args.append(inode)
        with self._lock:
            row = self._db.execute(query + " LIMIT 1", args).fetchone()
        return row is not None

    def refresh_stat(self, path: str, sha256: str, st: os.stat_result) -> None:
        """Record ``st`` (size, mtime, ctime, inode) for a row whose content was found
        unchanged by hashing, so the next rescan need not hash it again."""
        with self._lock:
            self._db.execute(
                "UPDATE files SET size=?, mtime_ns=?, ctime_ns=?, inode=? WHERE path=? AND "
                "sha256=?", (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, _key(path),
                             sha256))

    def lookup(self, path: str, sha256: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM files WHERE path=? AND sha256=?",
                (_key(path), sha256)).fetchone()
        return None if row is None else _record(row)

    def needs_processing(self, path: str, sha256: str) -> bool:
        """False only when this exact content at this path already has a final outcome."""
        record = self.lookup(path, sha256)
        return record is None or record.outcome not in FINAL_OUTCOMES

    def begin(self, path: str, sha256: str, size: int, mtime_ns: int, *,
              ctime_ns: int | None = None, inode: int | None = None) -> bool:
        """Mark the file in progress. Returns True when a crash had left it in progress."""
        with self._lock:
            row = self._db.execute("SELECT outcome FROM files WHERE path=? AND sha256=?",
                                   (_key(path), sha256)).fetchone()
            self._db.execute(
                "INSERT INTO files (path, sha256, size, mtime_ns, ctime_ns, inode, outcome, "
                "started_at) VALUES (?, ?, ?, ?, ?, ?, 'in-progress', ?) "
                "ON CONFLICT (path, sha256) DO UPDATE SET "
                "outcome='in-progress', size=excluded.size, mtime_ns=excluded.mtime_ns, "
                "ctime_ns=excluded.ctime_ns, inode=excluded.inode, "
                "started_at=excluded.started_at, finished_at=NULL, detail=NULL, intent=NULL",
                (_key(path), sha256, size, mtime_ns, ctime_ns, inode, time.time()))
        return row is not None and row[0] == "in-progress"

    def intend(self, path: str, sha256: str, intent: str, *, output: str | None = None,
               detail: str | None = None, inode: int | None = None) -> None:
        """Record, before doing it, a step that takes the file out of the inbox (``intent``
        "quarantine" or "dispose", with the output already written and the reason); the row
        is in progress until :meth:`finish`. Creates the row if needed."""
        with self._lock:
            self._db.execute(
                "INSERT INTO files (path, sha256, inode, outcome, output, detail, intent, "
                "started_at) VALUES (?, ?, ?, 'in-progress', ?, ?, ?, ?) "
                "ON CONFLICT (path, sha256) DO UPDATE SET outcome='in-progress', "
                "output=excluded.output, detail=excluded.detail, intent=excluded.intent, "
                "inode=coalesce(excluded.inode, inode), finished_at=NULL",
                (_key(path), sha256, inode, _key(output), _message(detail), intent,
                 time.time()))

    def finish(self, path: str, sha256: str, outcome: Outcome, *, correction: int | None = None,
               confidence: float | None = None, source: str | None = None,
               output: str | None = None, detail: str | None = None,
               size: int | None = None, mtime_ns: int | None = None,
               ctime_ns: int | None = None, inode: int | None = None) -> None:
        """Record the final (or error) outcome of a file; creates the row if begin() was skipped."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO files (path, sha256, size, mtime_ns, ctime_ns, inode, outcome, "
                "correction, confidence, source, output, detail, started_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (path, sha256) DO UPDATE "
                "SET outcome=excluded.outcome, correction=excluded.correction, "
                "confidence=excluded.confidence, source=excluded.source, "
                "output=excluded.output, detail=excluded.detail, "
                "finished_at=excluded.finished_at, size=coalesce(excluded.size, size), "
                "mtime_ns=coalesce(excluded.mtime_ns, mtime_ns), "
                "ctime_ns=coalesce(excluded.ctime_ns, ctime_ns), "
                "inode=coalesce(excluded.inode, inode)",
                (_key(path), sha256, size, mtime_ns, ctime_ns, inode, outcome, correction,
                 confidence, source, _key(output), _message(detail), now, now))

    def interrupted(self) -> list[str]:
        """Paths a previous run left in progress (it crashed or was killed mid-file)."""
        return [record.path for record in self.interrupted_records()]

    def interrupted_records(self) -> list[Record]:
        """The rows a previous run left in progress, with their intent and output."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM files WHERE outcome='in-progress'").fetchall()
        return [_record(row) for row in rows]

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
                f"SELECT {_RECORD_COLUMNS} FROM files WHERE outcome IN ('error','quarantined') "
                "ORDER BY finished_at DESC LIMIT ?", (limit,)).fetchall()
        return [_record(row) for row in rows]

    # -- the review queue: images waiting for a person, and the answers given ------------------

    def add_review(self, path: str, sha256: str, *, review_copy: str, inbox: str,
                   guess: int | None, confidence: float | None,
                   probabilities: tuple[float, float, float, float] | None,
                   reason: str) -> int:
        """Queue ``path`` (this content) for a person; returns its id. Queuing the same path
        and content again keeps the id and arrival time (and a settled answer)."""
        probs = None if probabilities is None else json.dumps([round(p, 6) for p in probabilities])
        with self._lock:
            self._db.execute(
                "INSERT INTO reviews (path, sha256, review_copy, inbox, guess, confidence, "
                "probs, reason, arrived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (path, sha256) DO UPDATE SET review_copy=excluded.review_copy, "
                "inbox=excluded.inbox, guess=excluded.guess, confidence=excluded.confidence, "
                "probs=excluded.probs, reason=excluded.reason",
                (_key(path), sha256, _key(review_copy), _key(inbox), guess, confidence, probs,
                 _message(reason), time.time()))
            row = self._db.execute("SELECT id FROM reviews WHERE path=? AND sha256=?",
                                   (_key(path), sha256)).fetchone()
        return int(row[0])

    def review_item(self, item_id: int) -> ReviewItem | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_REVIEW_COLUMNS} FROM reviews WHERE id=?",
                                   (item_id,)).fetchone()
        return None if row is None else _review_item(row)

    def review_items(self, *, settled: bool) -> list[ReviewItem]:
        """Waiting items (``settled`` False) or human labels (True), oldest first."""
        where = "settled_at IS NOT NULL" if settled else "settled_at IS NULL"
        order = "settled_at, id" if settled else "arrived_at, id"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_REVIEW_COLUMNS} FROM reviews WHERE {where} ORDER BY {order}")
            return [_review_item(row) for row in rows.fetchall()]

    def review_backlog(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM reviews WHERE settled_at IS NULL")
            return int(row.fetchone()[0])

    def unqueued_reviews(self) -> list[Record]:
        """``review`` rows without a queue entry (journals written before the queue existed)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM files f WHERE outcome='review' AND NOT EXISTS "
                "(SELECT 1 FROM reviews r WHERE r.path=f.path AND r.sha256=f.sha256)")
            return [_record(row) for row in rows.fetchall()]

    def settle_review(self, item_id: int, answer: int, output: str, detail: str) -> bool:
        """Record a person's answer for a waiting item and mark its file ``done`` (source
        ``human``), in one transaction. False when it was already settled (nothing changed)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changed = self._db.execute(
                    "UPDATE reviews SET answer=?, settled_at=?, output=? "
                    "WHERE id=? AND settled_at IS NULL",
                    (answer, now, _key(output), item_id)).rowcount
                if changed:
                    self._db.execute(
                        "UPDATE files SET outcome='done', correction=?, confidence=1.0, "
                        "source='human', output=?, detail=?, finished_at=? "
                        "WHERE (path, sha256) = (SELECT path, sha256 FROM reviews WHERE id=?)",
                        (answer, _key(output), _message(detail), now, item_id))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return bool(changed)

    def human_label(self, sha256: str) -> int | None:
        """The latest correction a person gave for this content (any path), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT answer FROM reviews WHERE sha256=? AND answer IS NOT NULL "
                "ORDER BY settled_at DESC LIMIT 1", (sha256,)).fetchone()
        return None if row is None else int(row[0])

    def labelled_output(self, sha256: str) -> Record | None:
        """The latest file of this content (SHA-256) whose correction is known exactly (as
        :meth:`labelled_after`), with its upright output; None when there is none."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM files WHERE {_LABELLED} AND sha256=? "
                "ORDER BY finished_at DESC LIMIT 1", (sha256,)).fetchone()
        return None if row is None else _record(row)

    def labelled_after(self, after: float, limit: int) -> list[Record]:
        """Up to ``limit`` files finished after ``after`` (Unix seconds) whose correction is
        known exactly: decided by a valid EXIF orientation (source ``exif``) or by a person
        (``human``), with their upright output; oldest first (on-device adaptation)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM files WHERE {_LABELLED} AND finished_at > ? "
                "ORDER BY finished_at LIMIT ?", (after, limit)).fetchall()
        return [_record(row) for row in rows]
