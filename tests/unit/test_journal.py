"""The SQLite journal: final outcomes stick, crashes are visible, threads can share it."""

from __future__ import annotations

import threading
from pathlib import Path

from rotwatchd.service.journal import Journal


def test_final_outcomes_are_never_redone_but_errors_and_crashes_are(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        assert journal.needs_processing("/in/a.jpg", "h1")
        assert journal.begin("/in/a.jpg", "h1", 10, 111) is False
        assert journal.needs_processing("/in/a.jpg", "h1")  # in progress = not finished
        journal.finish("/in/a.jpg", "h1", "done", correction=90, confidence=0.9,
                       source="model", output="/out/a.jpg", size=10, mtime_ns=111)
        assert not journal.needs_processing("/in/a.jpg", "h1")
        assert journal.needs_processing("/in/a.jpg", "h2")  # same path, new content
        assert journal.needs_processing("/in/b.jpg", "h1")  # same content, other path
        journal.finish("/in/c.jpg", "h3", "error", detail="disk full")
        assert journal.needs_processing("/in/c.jpg", "h3")
        record = journal.lookup("/in/a.jpg", "h1")
        assert record is not None
        assert (record.outcome, record.correction, record.source) == ("done", 90, "model")
        assert journal.is_known_unchanged("/in/a.jpg", 10, 111)
        assert not journal.is_known_unchanged("/in/a.jpg", 10, 112)


def test_in_progress_survives_a_restart(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        journal.begin("/in/x.jpg", "hx", 5, 1)
    with Journal(tmp_path) as journal:  # a new process after a crash
        assert journal.interrupted() == ["/in/x.jpg"]
        assert journal.needs_processing("/in/x.jpg", "hx")
        assert journal.begin("/in/x.jpg", "hx", 5, 1) is True
        journal.finish("/in/x.jpg", "hx", "review", detail="low confidence")
        assert journal.interrupted() == []
        assert journal.counts() == {"in-progress": 0, "done": 0, "review": 1,
                                    "quarantined": 0, "error": 0, "ignored": 0, "waiting": 0}


def test_recent_problems_newest_first(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        journal.finish("/in/1", "a", "quarantined", detail="corrupt")
        journal.finish("/in/2", "b", "done")
        journal.finish("/in/3", "c", "error", detail="boom")
        assert [r.path for r in journal.recent_problems()] == ["/in/3", "/in/1"]


def test_concurrent_writers(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        def work(n: int) -> None:
            for i in range(50):
                journal.begin(f"/in/{n}/{i}", "h", 1, 1)
                journal.finish(f"/in/{n}/{i}", "h", "done")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert journal.counts()["done"] == 200
    assert (tmp_path / "journal.sqlite3").exists()
