"""The review queue: images the model was unsure of, queued in the journal and settled by a
person (rotwatchd.service.review), through a real daemon, real files and the real writer."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import MarkerClassifier, fast_config, make_photo, red_edge, wait_until
from PIL import Image

from rotwatchd.config import Config, InboxConfig
from rotwatchd.service.decision import confidence_text
from rotwatchd.service.journal import Journal
from rotwatchd.service.review import (
    AlreadySettled,
    CannotSettle,
    ReviewQueue,
    UnknownItem,
)


def _reviewing(tmp_path: Path, **overrides: Any) -> Config:
    """A config whose threshold sends every model decision to review."""
    return fast_config(tmp_path, model={"min_confidence": 1.0}, **overrides)


def _with_review_copy(inbox: InboxConfig, original: Path) -> tuple[Path, str]:
    """Copy ``original`` (an inbox file) into the review folder as the daemon would; returns
    the copy and the content's SHA-256 (for rows written by hand: older journals)."""
    copy = inbox.review / original.relative_to(inbox.path)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, copy)
    return copy, hashlib.sha256(original.read_bytes()).hexdigest()


def _queue_one(tmp_path: Path, daemon_factory: Any, name: str = "a.jpg", correction: int = 90,
               **overrides: Any) -> tuple[Config, bytes]:
    config = _reviewing(tmp_path, **overrides)
    daemon, results = daemon_factory(config)
    data = make_photo(config.inboxes[0].path / "sub" / name, correction=correction,
                      size=(128, 96)).read_bytes()
    (result,) = results.wait_count(1)
    assert result.outcome == "review"
    daemon.stop()
    return config, data


def test_a_review_item_keeps_the_guess_its_probabilities_and_where_it_came_from(
        tmp_path: Path, daemon_factory: Any) -> None:
    config, data = _queue_one(tmp_path, daemon_factory)
    inbox = config.inboxes[0]
    with Journal(config.state_dir) as journal:
        (item,) = ReviewQueue(config, journal).waiting()
    assert item.path == str(inbox.path / "sub" / "a.jpg")
    assert item.review_copy == str(inbox.review / "sub" / "a.jpg")
    assert Path(item.review_copy).read_bytes() == data
    assert item.inbox == str(inbox.path)
    assert item.guess == 90 and item.confidence is not None
    assert item.probabilities is not None
    assert item.probabilities[1] == pytest.approx(item.confidence, abs=1e-5)
    assert sum(item.probabilities) == pytest.approx(1.0, abs=1e-4)
    assert "confidence" in item.reason and item.answer is None


def test_settling_writes_the_upright_copy_removes_the_review_copy_and_labels_it(
        tmp_path: Path, daemon_factory: Any) -> None:
    config, data = _queue_one(tmp_path, daemon_factory)
    inbox = config.inboxes[0]
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        settled = queue.settle(item.id, 90)
        assert settled.output == inbox.output / "sub" / "a.jpg"
        assert queue.waiting() == [] and queue.backlog() == 0
        (label,) = queue.labels()
        record = journal.lookup(item.path, item.sha256)
    with Image.open(settled.output) as image:
        assert red_edge(image)[0] == "top"
        assert image.size == (128, 96)
    assert not Path(item.review_copy).exists()
    assert (inbox.path / "sub" / "a.jpg").read_bytes() == data  # output.original: keep
    assert label.answer == 90 and label.guess == 90 and label.settled_at is not None
    assert label.output == str(settled.output)
    assert record is not None and record.outcome == "done" and record.source == "human"
    assert record.correction == 90 and record.output == str(settled.output)


def test_a_person_can_overrule_the_guess(tmp_path: Path, daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory, correction=180)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        assert item.guess == 180
        settled = queue.settle(item.id, 270)
    with Image.open(settled.output) as image:
        assert red_edge(image)[0] == "right"  # the bar at the bottom, turned 270 deg clockwise


def test_keep_copies_the_image_unchanged(tmp_path: Path, daemon_factory: Any) -> None:
    config, data = _queue_one(tmp_path, daemon_factory, correction=0)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        settled = queue.settle(item.id, 0)
    assert settled.output.read_bytes() == data


def test_the_same_content_dropped_again_is_never_asked_about_again(
        tmp_path: Path, daemon_factory: Any, classifier: MarkerClassifier) -> None:
    config, data = _queue_one(tmp_path, daemon_factory)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        queue.settle(queue.waiting()[0].id, 90)
    calls = classifier.calls
    daemon, results = daemon_factory(config)
    (config.inboxes[0].path / "again.jpg").write_bytes(data)
    (result,) = results.wait_count(1)
    assert result.outcome == "done" and result.decision is not None
    assert result.decision.source == "human" and result.decision.correction == 90
    assert classifier.calls == calls  # the model was not asked
    with Image.open(config.inboxes[0].output / "again.jpg") as image:
        assert red_edge(image)[0] == "top"
    with Journal(config.state_dir) as journal:
        assert ReviewQueue(config, journal).waiting() == []


def test_the_queue_survives_a_restart_and_a_crashless_second_run_adds_nothing(
        tmp_path: Path, daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory)
    with Journal(config.state_dir) as journal:
        before = ReviewQueue(config, journal).waiting()
    daemon, results = daemon_factory(config)  # rescans the inbox at start
    daemon.stop()
    with Journal(config.state_dir) as journal:
        assert ReviewQueue(config, journal).waiting() == before


def test_unknown_settled_and_invalid_answers_are_refused(tmp_path: Path,
                                                         daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        with pytest.raises(ValueError):
            queue.settle(item.id, 45)
        with pytest.raises(UnknownItem):
            queue.settle(item.id + 100, 0)
        queue.settle(item.id, 90)
        with pytest.raises(AlreadySettled) as caught:
            queue.settle(item.id, 0)
    assert caught.value.item.answer == 90
    assert not (config.inboxes[0].output / "sub" / "a.1.jpg").exists()


def test_a_review_copy_removed_by_hand_is_settled_from_the_original(
        tmp_path: Path, daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        os.unlink(item.review_copy)
        assert queue.image_path(item.id) == Path(item.path)
        settled = queue.settle(item.id, 90)
    with Image.open(settled.output) as image:
        assert red_edge(image)[0] == "top"


def test_a_link_in_the_review_folder_is_never_read_through(tmp_path: Path,
                                                           daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory)
    secret = make_photo(tmp_path / "private" / "secret.jpg", correction=0, seed=7)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        os.unlink(item.review_copy)
        os.symlink(secret, item.review_copy)
        os.unlink(item.path)  # and the original is gone
        with pytest.raises(CannotSettle, match="neither its review copy"):
            queue.image_path(item.id)
        with pytest.raises(CannotSettle):
            queue.settle(item.id, 90)
        assert queue.waiting() == [item]
    output = config.inboxes[0].output
    assert not output.exists() or not any(output.rglob("*.jpg"))


def test_other_bytes_under_the_review_copy_s_name_are_not_taken_for_it(
        tmp_path: Path, daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        make_photo(Path(item.review_copy), correction=0, seed=3)  # replaced by another image
        os.unlink(item.path)
        with pytest.raises(CannotSettle):
            queue.settle(item.id, 90)


@pytest.mark.parametrize("policy", ["move", "delete"])
def test_the_original_follows_output_original_once_settled(tmp_path: Path, daemon_factory: Any,
                                                           policy: str) -> None:
    output = {"original": policy, "done_dir": "done"} if policy == "move" else \
        {"original": policy}
    config, data = _queue_one(tmp_path, daemon_factory, output=output)
    original = config.inboxes[0].path / "sub" / "a.jpg"
    assert original.exists()  # waiting: the original stays where it was
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        queue.settle(queue.waiting()[0].id, 90)
    assert not original.exists()
    if policy == "move":
        assert (tmp_path / "done" / "sub" / "a.jpg").read_bytes() == data


def test_an_original_changed_since_it_was_queued_is_left_alone(tmp_path: Path,
                                                               daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory, output={"original": "delete"})
    original = config.inboxes[0].path / "sub" / "a.jpg"
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        make_photo(original, correction=0, seed=9)  # the user saved another image there
        changed = original.read_bytes()
        queue.settle(item.id, 90)
    assert original.read_bytes() == changed


def test_an_item_whose_inbox_left_the_configuration_says_so(tmp_path: Path,
                                                            daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory)
    (tmp_path / "other").mkdir()
    moved = fast_config(tmp_path, inboxes=[{"path": "other", "output": "out2"}])
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(moved, journal)
        (item,) = queue.waiting()
        with pytest.raises(CannotSettle, match="no longer in the configuration"):
            queue.settle(item.id, 90)


def test_review_rows_from_before_the_queue_are_adopted(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    original = make_photo(inbox.path / "old.jpg", correction=90)
    copy, digest = _with_review_copy(inbox, original)
    with Journal(config.state_dir) as journal:
        journal.finish(str(original), digest, "review", correction=90, confidence=0.5,
                       source="model", output=str(copy), detail="confidence 0.500 < 0.9")
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        assert (item.path, item.review_copy, item.guess) == (str(original), str(copy), 90)
        assert item.probabilities is None
        settled = queue.settle(item.id, 90)
        assert ReviewQueue(config, journal).waiting() == []  # adopted once
    with Image.open(settled.output) as image:
        assert red_edge(image)[0] == "top"


def test_the_journal_says_who_decided_and_what_the_model_had_guessed(
        tmp_path: Path, daemon_factory: Any) -> None:
    config, _ = _queue_one(tmp_path, daemon_factory)
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        queue.settle(item.id, 270)
        record = journal.lookup(item.path, item.sha256)
    assert record is not None and record.detail is not None
    assert record.detail.startswith(
        f"a person said 270 deg (model guessed 90 deg at "
        f"{confidence_text(item.confidence or 0)}), ")


def test_an_image_without_a_guess_is_settled_and_journaled_as_such(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    original = inbox.path / "anim.gif"
    frames[0].save(original, save_all=True, append_images=frames[1:], duration=100)
    copy, digest = _with_review_copy(inbox, original)
    with Journal(config.state_dir) as journal:
        journal.finish(str(original), digest, "review", output=str(copy), detail="animated")
        journal.add_review(str(original), digest, review_copy=str(copy), inbox=str(inbox.path),
                           guess=None, confidence=None, probabilities=None, reason="animated")
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        with pytest.raises(CannotSettle, match="cannot turn animated GIF"):
            queue.settle(item.id, 90)
        settled = queue.settle(item.id, 0)
        record = journal.lookup(str(original), digest)
    assert settled.output.read_bytes() == original.read_bytes()
    assert record is not None and record.outcome == "done" and record.source == "human"
    assert record.detail is not None
    assert record.detail.startswith("a person said 0 deg (no guess), ")


def test_a_broken_image_in_the_queue_cannot_be_settled_and_says_why(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    good = make_photo(tmp_path / "good.jpg", correction=90).read_bytes()
    original = inbox.path / "broken.jpg"
    original.write_bytes(good[: len(good) // 2])  # queued by an older daemon, now truncated
    copy, digest = _with_review_copy(inbox, original)
    with Journal(config.state_dir) as journal:
        journal.add_review(str(original), digest, review_copy=str(copy), inbox=str(inbox.path),
                           guess=90, confidence=0.5, probabilities=None, reason="old")
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        with pytest.raises(CannotSettle) as caught:
            queue.settle(item.id, 90)
        assert queue.waiting() == [item]  # nothing journaled
    assert str(caught.value) == (
        f"review item {item.id}: {copy} cannot be turned, it is damaged (truncated: data ends "
        "inside a scan (no EOI))")
    assert copy.exists() and not (inbox.output / "broken.jpg").exists()


def test_settling_waits_for_another_process_settling_at_the_same_moment(
        tmp_path: Path, daemon_factory: Any) -> None:
    """The lock file in state_dir serialises settling across processes (the daemon's page and
    the CLI): while another holds it, a settle waits (seen in /proc/locks) and writes nothing."""
    config, _ = _queue_one(tmp_path, daemon_factory)
    lock_path = config.state_dir / "review.lock"
    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        outcome: list[object] = []
        with open(lock_path, "a+") as other_process:
            fcntl.flock(other_process, fcntl.LOCK_EX)
            thread = threading.Thread(target=lambda: outcome.append(queue.settle(item.id, 90)))
            thread.start()
            inode = os.stat(lock_path).st_ino

            def waiting_for_the_lock() -> bool:
                with open("/proc/locks") as locks:
                    return any("->" in line and f":{inode} " in line for line in locks)

            wait_until(waiting_for_the_lock, timeout=10)
            assert not outcome and not (config.inboxes[0].output / "sub" / "a.jpg").exists()
        thread.join(timeout=30)
    assert len(outcome) == 1 and (config.inboxes[0].output / "sub" / "a.jpg").exists()


def test_adopted_rows_keep_their_reason_or_say_where_they_came_from(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    with Journal(config.state_dir) as journal:
        for name, detail in (("a.jpg", "confidence 0.500 < 0.9"), ("b.jpg", None)):
            original = make_photo(inbox.path / name, correction=90, seed=len(name) + ord(name[0]))
            copy, digest = _with_review_copy(inbox, original)
            journal.finish(str(original), digest, "review", correction=90, confidence=0.5,
                           source="model", output=str(copy), detail=detail)
        reasons = [item.reason for item in ReviewQueue(config, journal).waiting()]
    assert reasons == ["confidence 0.500 < 0.9", "queued before the review queue existed"]
