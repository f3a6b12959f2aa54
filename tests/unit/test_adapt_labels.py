"""The label store: bounded, forgettable, and it survives restarts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rotwatchd.adapt.labels import LABELS_NAME, LabelStore


def _features(seed: int, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 6, (4, dim)).astype(np.float32)


def test_labels_survive_a_restart_with_their_source_and_features(tmp_path: Path) -> None:
    with LabelStore(tmp_path) as store:
        store.add("a" * 64, "exif", _features(1), np.full((4, 4), 0.25), now=10.0)
        store.add("b" * 64, "human", _features(2), np.eye(4), now=11.0)
        store.put("cursor", 123.5)
    with LabelStore(tmp_path) as store:
        labels = store.load()
        assert labels.sha256 == ("a" * 64, "b" * 64)
        assert labels.source == ("exif", "human")
        assert labels.features.shape == (2, 4, 16)
        assert np.allclose(labels.features[1], _features(2), atol=1e-2)  # kept as float16
        assert labels.text is not None and np.array_equal(labels.text[1], np.eye(4))
        assert store.counts() == {"exif": 1, "human": 1}
        assert store.get("cursor") == 123.5


def test_the_store_is_bounded_and_drops_the_oldest_first(tmp_path: Path) -> None:
    with LabelStore(tmp_path, max_labels=3) as store:
        for i in range(5):
            store.add(f"{i:064d}", "exif", _features(i), now=100.0 + i)
        assert store.count() == 3
        assert store.load().sha256 == tuple(f"{i:064d}" for i in (2, 3, 4))
        store.add(f"{2:064d}", "human", _features(9), now=200.0)  # the same photo, relabelled
        assert store.count() == 3
        assert store.load().source[-1] == "human"


def _all_bytes(folder: Path) -> bytes:
    """The label database and its write-ahead log, as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob(LABELS_NAME + "*")))


def test_forget_deletes_every_label_and_moves_the_cursor_to_now(tmp_path: Path) -> None:
    with LabelStore(tmp_path) as store:
        for i in range(20):
            store.add(f"{i:064d}", "exif", _features(i, 1280))
        store.put("cursor", 5.0)
        stored = [_features(i, 1280).astype(np.float16).tobytes()[:256] for i in range(20)]
        assert any(blob in _all_bytes(tmp_path) for blob in stored)
        assert store.forget(now=1000.0) == 20
        assert store.count() == 0 and len(store.load()) == 0
        assert store.get("cursor") == 1000.0
        assert not any(blob in _all_bytes(tmp_path) for blob in stored)  # not even in free pages
    with LabelStore(tmp_path) as store:
        assert store.count() == 0


def test_a_label_must_be_four_turns_of_one_photo_from_a_known_source(tmp_path: Path) -> None:
    with LabelStore(tmp_path) as store:
        with pytest.raises(ValueError, match="source"):
            store.add("c" * 64, "model", _features(1))
        with pytest.raises(ValueError, match=r"\(4, F\)"):
            store.add("c" * 64, "exif", np.zeros((3, 16)))


def _first_schema_store(folder: Path) -> None:
    """A label store as the first schema wrote it (no model column), with one untagged row."""
    import sqlite3

    with sqlite3.connect(folder / LABELS_NAME) as db:
        db.execute("CREATE TABLE labels (sha256 TEXT PRIMARY KEY, source TEXT NOT NULL, "
                   "added_at REAL NOT NULL, dim INTEGER NOT NULL, features BLOB NOT NULL, "
                   "text BLOB)")
        db.execute("INSERT INTO labels VALUES (?, 'exif', 1.0, 16, ?, NULL)",
                   ("0" * 64, _features(0).astype(np.float16).tobytes()))
    db.close()


def test_labels_of_another_scene_network_are_not_loaded_for_this_one(tmp_path: Path) -> None:
    """A new release's network computes other features at the same F: labels stored by the
    earlier one (tagged with its digest, or untagged in a store written before labels named
    their model) are left out of what this network's head is fitted on."""
    _first_schema_store(tmp_path)
    with LabelStore(tmp_path) as store:
        store.add("a" * 64, "exif", _features(1), now=2.0, model="old")
        store.add("b" * 64, "human", _features(2), now=3.0, model="new")
        store.add("c" * 64, "exif", _features(3, 32), now=4.0, model="new")
        assert store.load("new").sha256 == ("c" * 64,)  # the newest F, this network's rows
        assert store.load("old").sha256 == ("a" * 64,)
        assert len(store.load("other")) == 0
        assert store.load().sha256 == ("c" * 64,)  # untagged: every row of the newest F
        assert store.count() == 4


def test_labels_of_an_earlier_network_are_counted_apart_and_listed_once(
        tmp_path: Path) -> None:
    """After an upgrade: this network's labels per source, the earlier ones (tagged with
    another digest or untagged) counted and listed oldest first for re-collecting; one whose
    photo could not be read again is listed no more for this network, but kept as it was."""
    _first_schema_store(tmp_path)
    with LabelStore(tmp_path) as store:
        store.add("a" * 64, "human", _features(1), now=2.0, model="old")
        store.add("b" * 64, "exif", _features(2), now=3.0, model="new")
        assert store.counts("new") == {"exif": 1, "human": 0}
        assert store.counts() == {"exif": 2, "human": 1}
        assert store.stale_count("new") == 2
        assert store.stale("new", 10) == [("0" * 64, "exif", 1.0), ("a" * 64, "human", 2.0)]
        assert store.stale("new", 1) == [("0" * 64, "exif", 1.0)]
        store.mark_tried("0" * 64, "new")
        assert store.stale("new", 10) == [("a" * 64, "human", 2.0)]
        assert store.stale_count("new") == 2  # still not this network's: still counted apart
        assert store.stale("newer", 10)[0][0] == "0" * 64  # tried for "new" only
        store.add("a" * 64, "human", _features(3), now=2.0, model="new")  # computed again
        assert store.stale("new", 10) == [] and store.stale_count("new") == 1
        assert store.counts("new") == {"exif": 1, "human": 1}
        assert store.load("new").sha256 == ("a" * 64, "b" * 64)  # its age kept: still first
