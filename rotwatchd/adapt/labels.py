"""The label store: what on-device adaptation learns from, kept in ``state_dir`` only.

One row per labelled photo (its content's SHA-256, primary key): the scene network's pooled
features of the upright photo turned 0, 1, 2 and 3 times (float16, 4 x F), the text network's
probabilities for the same four turns when the text cue is installed, where the label came from
(``exif``: a valid EXIF Orientation decided the photo; ``human``: a person's answer in the
review queue), when it was added and which scene network computed the features (its model
file's SHA-256). Never the picture, never copied elsewhere.

After a model upgrade the rows of the earlier network are of no use to the new one: they are
counted apart (:meth:`LabelStore.counts` with ``model``, :meth:`LabelStore.stale_count`) and
listed for re-collecting (:meth:`LabelStore.stale`); a row whose photo cannot be read again is
marked as tried for that network (:meth:`LabelStore.mark_tried`), so it is listed only once.

Bounded: at most ``max_labels`` rows, the oldest dropped first. :meth:`LabelStore.forget`
deletes every row (and VACUUMs, so the bytes leave the file) and moves the collection cursor to
now, so the photos already handled are not collected again. SQLite in WAL mode: the daemon and
``rotwatchd adapt`` may use it at the same time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

LABELS_NAME: Final = "labels.sqlite3"
SOURCES: Final = ("exif", "human")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    sha256   TEXT PRIMARY KEY,
    source   TEXT NOT NULL,
    added_at REAL NOT NULL,
    dim      INTEGER NOT NULL,
    features BLOB NOT NULL,
    text     BLOB,
    model    TEXT,
    tried    TEXT
);
CREATE INDEX IF NOT EXISTS labels_by_age ON labels (added_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


@dataclass(frozen=True)
class LabelSet:
    """Labels as arrays: ``features`` (N, 4, F) float32, ``text`` (N, 4, 4) or None when
    any row lacks it; ``sha256`` and ``source`` (N,) in the order they were added."""

    sha256: tuple[str, ...]
    source: tuple[str, ...]
    features: np.ndarray
    text: np.ndarray | None

    def __len__(self) -> int:
        return len(self.sha256)

    def subset(self, mask: np.ndarray) -> LabelSet:
        keep = np.flatnonzero(mask)
        return LabelSet(tuple(self.sha256[i] for i in keep),
                        tuple(self.source[i] for i in keep), self.features[keep],
                        None if self.text is None else self.text[keep])


class LabelStore:
    """Open (creating) ``<folder>/labels.sqlite3``. Thread-safe; call :meth:`close`."""

    def __init__(self, folder: Path, max_labels: int = 2000) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = folder / LABELS_NAME
        self.max_labels = max_labels
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # dropped labels are zeroed, not left
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(labels)")}
        if "model" not in columns:  # a store written before labels named their model
            self._db.execute("ALTER TABLE labels ADD COLUMN model TEXT")
        if "tried" not in columns:  # ... or were re-collected after a model upgrade
            self._db.execute("ALTER TABLE labels ADD COLUMN tried TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, sha256: str, source: str, features: np.ndarray,
            text: np.ndarray | None = None, now: float | None = None,
            model: str | None = None) -> None:
        """Store (or replace) the label of this content, then drop the oldest rows beyond
        ``max_labels``. ``features`` (4, F): the upright photo turned 0..3 times; ``model``:
        the SHA-256 of the scene network that computed them; ``now``: when it was added (Unix
        seconds; re-collecting keeps a label's age). Raises ValueError (unknown source,
        features not 4 x F)."""
        if source not in SOURCES:
            raise ValueError(f"label source must be one of {SOURCES}, got {source!r}")
        feats = np.asarray(features, dtype=np.float16)
        if feats.ndim != 2 or feats.shape[0] != 4:
            raise ValueError(f"features must be (4, F), got {feats.shape}")
        blob = None if text is None else np.asarray(text, dtype=np.float32).tobytes()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO labels "
                "(sha256, source, added_at, dim, features, text, model) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sha256, source, time.time() if now is None else now, feats.shape[1],
                 feats.tobytes(), blob, model))
            self._db.execute(
                "DELETE FROM labels WHERE sha256 NOT IN "
                "(SELECT sha256 FROM labels ORDER BY added_at DESC, rowid DESC LIMIT ?)",
                (self.max_labels,))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM labels").fetchone()[0])

    def counts(self, model: str | None = None) -> dict[str, int]:
        """Labels per source (every source present, zeros included); with ``model``, only
        those whose features that scene network computed (those :meth:`load` returns)."""
        query = "SELECT source, count(*) FROM labels"
        args: tuple[str, ...] = ()
        if model is not None:
            query, args = query + " WHERE model = ?", (model,)
        with self._lock:
            found = dict(self._db.execute(query + " GROUP BY source", args).fetchall())
        return {source: int(found.get(source, 0)) for source in SOURCES}

    def stale_count(self, model: str) -> int:
        """Labels whose features another scene network than ``model`` computed (or an
        unnamed one: rows stored before labels named their model)."""
        with self._lock:
            return int(self._db.execute(
                "SELECT count(*) FROM labels WHERE model IS NULL OR model != ?",
                (model,)).fetchone()[0])

    def stale(self, model: str, limit: int) -> list[tuple[str, str, float]]:
        """Up to ``limit`` labels of another network than ``model`` not yet tried again
        with it (:meth:`mark_tried`), oldest first: (sha256, source, added_at)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sha256, source, added_at FROM labels WHERE (model IS NULL OR "
                "model != ?) AND (tried IS NULL OR tried != ?) ORDER BY added_at, rowid "
                "LIMIT ?", (model, model, limit)).fetchall()
        return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    def mark_tried(self, sha256: str, model: str) -> None:
        """This label's photo could not be read again for ``model``: leave the row as it is
        (an earlier network's features, for a return to it) and list it no more."""
        with self._lock:
            self._db.execute("UPDATE labels SET tried=? WHERE sha256=?", (model, sha256))

    def has(self, sha256: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM labels WHERE sha256=?",
                                    (sha256,)).fetchone() is not None

    def load(self, model: str | None = None) -> LabelSet:
        """Every label, oldest first (memory: ~20 KB a label for F = 1280); with ``model``,
        only those whose features that scene network computed (features of another network
        mean nothing to this one's head, even at the same F). Rows of another F than the
        newest row's are left out too."""
        query = "SELECT sha256, source, dim, features, text FROM labels"
        args: tuple[str, ...] = ()
        if model is not None:
            query, args = query + " WHERE model = ?", (model,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY added_at, rowid", args).fetchall()
        if not rows:
            return LabelSet((), (), np.zeros((0, 4, 0), np.float32), None)
        dim = int(rows[-1][2])
        rows = [r for r in rows if int(r[2]) == dim]  # a model change leaves old rows behind
        features = np.stack([np.frombuffer(r[3], np.float16).reshape(4, dim) for r in rows])
        text = (np.stack([np.frombuffer(r[4], np.float32).reshape(4, 4) for r in rows])
                if all(r[4] is not None for r in rows) else None)
        return LabelSet(tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                        features.astype(np.float32), text)

    def get(self, key: str, default: float = 0.0) -> float:
        """A number kept between runs (the collection cursor, labels at the last fit)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else float(row[0])

    def put(self, key: str, value: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (key, value))

    def forget(self, now: float | None = None) -> int:
        """Delete every label (the freed pages too) and start collecting from ``now`` on.
        Returns how many labels were deleted."""
        with self._lock:
            deleted = int(self._db.execute("SELECT count(*) FROM labels").fetchone()[0])
            self._db.execute("DELETE FROM labels")
            self._db.execute("DELETE FROM meta")
            self._db.execute("INSERT INTO meta (key, value) VALUES ('cursor', ?)",
                             (time.time() if now is None else now,))
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted
