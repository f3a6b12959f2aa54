"""The review queue around its edges: a picture rotwatchd cannot turn is refused with a way
out, a reload's folders are used, old review rows outside the configuration do not stop a
start, and the journal says who decided what."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from helpers import MarkerClassifier, fast_config, make_photo
from PIL import Image

from rotwatchd.config import ensure_dirs
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.decision import confidence_text
from rotwatchd.service.journal import Journal
from rotwatchd.service.processor import Processor
from rotwatchd.service.review import CannotSettle, ReviewQueue


def _animated_gif(path: Path) -> bytes:
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "blue")]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return path.read_bytes()


def test_an_animation_cannot_be_turned_but_can_be_settled_as_it_is(tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    ensure_dirs(config)
    inbox = config.inboxes[0]
    data = _animated_gif(inbox.path / "party.gif")
    with Journal(config.state_dir) as journal:
        classifier = MarkerClassifier()
        result = Processor(config, journal, ClassifierPool(lambda: classifier)).process(
            inbox.path / "party.gif", inbox)
        assert result.outcome == "review"
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        with pytest.raises(CannotSettle) as caught:
            queue.settle(item.id, 90)
        assert str(caught.value) == (
            f"review item {item.id}: rotwatchd cannot turn animated GIF (not rotated) files; "
            "settle it as it is (0) and turn it elsewhere")
        assert queue.waiting() == [item]  # nothing was journaled
        settled = queue.settle(item.id, 0)
        record = journal.lookup(item.path, item.sha256)
    assert settled.output.read_bytes() == data
    assert record is not None and record.detail == (
        f"a person said 0 deg (no guess), {settled.note}")


def test_a_reload_s_output_folder_is_used_for_the_next_answer(tmp_path: Path) -> None:
    config = fast_config(tmp_path, model={"min_confidence": 1.0})
    ensure_dirs(config)
    inbox = config.inboxes[0]
    make_photo(inbox.path / "a.jpg", correction=90)
    with Journal(config.state_dir) as journal:
        classifier = MarkerClassifier()
        Processor(config, journal, ClassifierPool(lambda: classifier)).process(
            inbox.path / "a.jpg", inbox)
        queue = ReviewQueue(config, journal)
        (item,) = queue.waiting()
        reloaded = fast_config(tmp_path, model={"min_confidence": 1.0},
                               inboxes=[{"path": "inbox", "output": "upright"}])
        queue.reconfigure(reloaded)
        settled = queue.settle(item.id, 90)
        record = journal.lookup(item.path, item.sha256)
    assert settled.output == tmp_path / "upright" / "a.jpg"
    assert not (tmp_path / "outbox" / "a.jpg").exists()
    assert item.guess == 90 and item.confidence is not None
    assert record is not None and record.detail == (
        f"a person said 90 deg (model guessed 90 deg at {confidence_text(item.confidence)}), "
        f"{settled.note}")


@pytest.mark.parametrize("kept_first", [True, False])
def test_old_review_rows_outside_the_configuration_do_not_stop_a_start(
        tmp_path: Path, kept_first: bool) -> None:
    """A journal from before the queue, whose inbox was since removed from the configuration
    (or whose row names no copy): those rows are left as they are, the others adopted,
    whichever the journal lists first."""
    config = fast_config(tmp_path)
    ensure_dirs(config)
    inbox = config.inboxes[0]
    original = make_photo(inbox.path / "kept.jpg", correction=90)
    copy = inbox.review / "kept.jpg"
    shutil.copyfile(original, copy)
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    with Journal(config.state_dir) as journal:
        def kept() -> None:
            journal.finish(str(original), digest, "review", correction=90, confidence=0.5,
                           source="model", output=str(copy), detail="confidence 0.500 < 0.9")

        if kept_first:
            kept()
        journal.finish(str(tmp_path / "old-inbox" / "b.jpg"), "b" * 64, "review",
                       correction=0, confidence=0.4, source="model",
                       output=str(tmp_path / "old-review" / "b.jpg"), detail="unsure")
        journal.finish(str(inbox.path / "nocopy.jpg"), "c" * 64, "review", detail="unsure")
        if not kept_first:
            kept()
        queue = ReviewQueue(config, journal)
        assert [item.path for item in queue.waiting()] == [str(original)]


def _queued(tmp_path: Path, **overrides: object) -> tuple[ReviewQueue, Journal, Path]:
    """One photo (needing 180 deg) in the review queue, as the daemon leaves it."""
    config = fast_config(tmp_path, model={"min_confidence": 1.0}, **overrides)
    ensure_dirs(config)
    photo = make_photo(config.inboxes[0].path / "p.jpg", correction=180, size=(96, 64))
    journal = Journal(config.state_dir)
    pool = ClassifierPool(MarkerClassifier)
    assert Processor(config, journal, pool).process(photo, config.inboxes[0]).outcome == "review"
    return ReviewQueue(config, journal), journal, photo


def test_a_person_answering_180_gets_the_photo_turned_half_way(tmp_path: Path) -> None:
    from helpers import red_edge

    queue, journal, _ = _queued(tmp_path)
    with journal:
        (item,) = queue.waiting()
        settled = queue.settle(item.id, 180)
    with Image.open(settled.output) as image:
        assert red_edge(image)[0] == "top" and image.size == (96, 64)


def test_an_original_that_cannot_be_moved_away_leaves_the_answer_standing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """output.original: move, but done_dir became a plain file since: the upright copy is
    written and the answer recorded; the original stays in the inbox, and the log says so."""
    done = tmp_path / "done"
    done.mkdir()
    queue, journal, photo = _queued(tmp_path, output={"original": "move", "done_dir": str(done)})
    done.rmdir()
    done.write_text("a file where the folder was")
    before = photo.read_bytes()
    with journal, caplog.at_level(logging.INFO, logger="rotwatchd.service.review"):
        (item,) = queue.waiting()
        settled = queue.settle(item.id, 180)
        assert queue.waiting() == []
        record = journal.lookup(item.path, item.sha256)
    assert settled.output.is_file() and photo.read_bytes() == before
    assert record is not None and record.outcome == "done"
    (line,) = [r.getMessage() for r in caplog.records if "settled" in r.getMessage()]
    assert "; original left in place (" in line
