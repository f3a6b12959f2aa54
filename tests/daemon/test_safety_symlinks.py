"""Nothing is read or written outside its folder: a name swapped for a symlink mid-file is
never followed, and a symlinked folder inside the output tree is never written through."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import MarkerClassifier, fast_config, make_photo, red_edge, wait_until
from PIL import Image

from rotwatchd.config import Config, InboxConfig, ensure_dirs
from rotwatchd.formats.image import load_upright
from rotwatchd.model.base import Prediction
from rotwatchd.output.inboxfile import Replaced, open_inbox_file
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.journal import Journal
from rotwatchd.service.processor import Processor
from rotwatchd.service.status import format_status


class SwappingClassifier(MarkerClassifier):
    """A real MarkerClassifier that, while the file is being looked at (after it was hashed,
    before it is written), replaces the inbox name with a symlink to ``secret``: what an
    attacker sharing the inbox could do at any moment."""

    def __init__(self, victim: Path, secret: Path) -> None:
        super().__init__()
        self.victim, self.secret = victim, secret

    def predict(self, image: Image.Image) -> Prediction:
        swap = self.victim.with_name(".swap")
        os.symlink(self.secret, swap)
        os.rename(swap, self.victim)
        return super().predict(image)


def _processor(config: Config, journal: Journal, classifier: MarkerClassifier) -> Processor:
    ensure_dirs(config)
    return Processor(config, journal, ClassifierPool(lambda: classifier))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize("original", ["keep", "move", "delete"])
@pytest.mark.parametrize("correction", [0, 90])
def test_a_name_swapped_for_a_symlink_mid_file_is_never_followed(
        tmp_path: Path, correction: int, original: str) -> None:
    settings: dict[str, Any] = {"original": original}
    if original == "move":
        settings["done_dir"] = "done"
    config = fast_config(tmp_path, output=settings, model={"min_confidence": 0.6})
    inbox = config.inboxes[0]
    secret = make_photo(tmp_path / "private" / "secret.jpg", correction=correction, seed=7)
    secret_bytes = secret.read_bytes()
    victim = make_photo(inbox.path / "a.jpg", correction=correction, seed=1)
    original_bytes = victim.read_bytes()
    # what the photo that was hashed, and the secret, look like once turned upright
    expected, leaked = (np.asarray(load_upright(p).rotate(-correction, expand=True), float)
                        for p in (victim, secret))
    with Journal(config.state_dir) as journal:
        processor = _processor(config, journal, SwappingClassifier(victim, secret))
        result = processor.process(victim, inbox)

    assert result.outcome == "done" and result.output == inbox.output / "a.jpg"
    if correction == 0:
        assert result.output.read_bytes() == original_bytes
    written = np.asarray(load_upright(result.output), float)
    assert np.abs(written - expected).mean() < 3 < 10 < np.abs(written - leaked).mean()
    assert red_edge(load_upright(result.output))[0] == "top"
    for folder in (inbox.output, inbox.review, inbox.quarantine, tmp_path / "done"):
        if folder.exists():
            assert secret_bytes not in _files(folder).values()
    # the symlink put in its place is not the file that was processed: never moved or removed
    assert victim.is_symlink() and os.readlink(victim) == str(secret)
    assert secret.read_bytes() == secret_bytes


def test_a_folder_swapped_for_a_symlink_is_not_read(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    config = fast_config(tmp_path)
    inbox = config.inboxes[0]
    elsewhere = tmp_path / "private"
    make_photo(elsewhere / "a.jpg", correction=90)
    os.symlink(elsewhere, inbox.path / "sub")  # was a real folder when a.jpg was noticed
    with Journal(config.state_dir) as journal:
        result = _processor(config, journal, MarkerClassifier()).process(
            inbox.path / "sub" / "a.jpg", inbox)
        assert journal.counts() == dict.fromkeys(journal.counts(), 0)
    assert result.outcome == "skipped"
    assert not any(inbox.output.rglob("*")) and not any(inbox.quarantine.rglob("*"))
    assert (elsewhere / "a.jpg").exists()
    assert any("symbolic link" in r.getMessage() for r in caplog.records)


def _escape_case(tmp_path: Path, folder: str) -> tuple[Config, InboxConfig, Path, Path]:
    """An inbox whose ``folder`` (output, review, quarantine, done) has a subfolder ``sub``
    that is a symlink to ``outside``, and the inbox file that would be written there."""
    settings: dict[str, Any] = {}
    if folder == "done":
        settings = {"original": "move", "done_dir": "done"}
    config = fast_config(tmp_path, output=settings, model={"min_confidence": 0.6})
    ensure_dirs(config)
    inbox = config.inboxes[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    root = {"output": inbox.output, "review": inbox.review, "quarantine": inbox.quarantine,
            "done": tmp_path / "done"}[folder]
    os.symlink(outside, root / "sub")
    path = inbox.path / "sub" / "a.jpg"
    if folder == "review":
        make_photo(path, marker=False)
    elif folder == "quarantine":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not a picture at all\n" * 10)
    else:
        make_photo(path, correction=90)
    return config, inbox, outside, path


@pytest.mark.parametrize("folder", ["output", "review", "quarantine", "done"])
def test_a_symlinked_folder_in_the_output_tree_is_never_written_through(
        tmp_path: Path, folder: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config, inbox, outside, path = _escape_case(tmp_path, folder)
    data = path.read_bytes()
    with Journal(config.state_dir) as journal:
        processor = _processor(config, journal, MarkerClassifier())
        result = processor.process(path, inbox)
    assert list(outside.iterdir()) == []  # nothing written, moved or left there
    assert path.read_bytes() == data  # the file is still safely in the inbox
    refusals = [r for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].exc_info is None
    if folder == "done":  # the output is written; only the move of the original is refused
        assert result.outcome == "done"
        assert (inbox.output / "sub" / "a.jpg").exists()
    elif folder == "quarantine":
        assert result.outcome == "quarantined" and result.output is None
    else:
        assert result.outcome == "error"


def test_the_daemon_refuses_a_symlinked_output_folder_and_keeps_going(
        tmp_path: Path, daemon_factory: Any) -> None:
    config, inbox, outside, path = _escape_case(tmp_path, "output")
    shutil.move(path, tmp_path / "held.jpg")
    daemon, results = daemon_factory(config)
    os.rename(tmp_path / "held.jpg", path)
    make_photo(tmp_path / "b.jpg", correction=180)
    os.rename(tmp_path / "b.jpg", inbox.path / "b.jpg")
    results.wait_count(2)
    assert {r.path.name: r.outcome for r in results.items} == {"a.jpg": "error",
                                                                "b.jpg": "done"}
    assert list(outside.iterdir()) == []
    assert path.exists()


def test_a_refused_output_folder_is_retried_once_it_is_a_real_folder(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A write refused because its output folder is a symlink out waits in the inbox (shown
    in status) and is written as soon as that link is replaced by a real folder, without a new
    event or the hourly rescan; its one log line says so."""
    config, inbox, outside, path = _escape_case(tmp_path, "output")
    shutil.move(path, tmp_path / "held.jpg")
    daemon, results = daemon_factory(config)
    os.rename(tmp_path / "held.jpg", path)
    results.wait_for(lambda items: [r.outcome for r in items] == ["error"])
    refusals = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(refusals) == 1 and "once that folder is no longer a symbolic link" in refusals[0]
    wait_until(lambda: daemon.snapshot()["waiting"].get("refused", {}).get("count") == 1)
    assert "waiting: 1 refused: their output folder is a symbolic link" in format_status(
        daemon.snapshot())
    assert path.exists() and list(outside.iterdir()) == []
    link = inbox.output / "sub"
    link.unlink()
    link.mkdir()  # the user's fix: a real folder where the link was
    results.wait_for(lambda items: [r.outcome for r in items] == ["error", "done"], timeout=60)
    assert red_edge(load_upright(link / "a.jpg"))[0] == "top"
    assert list(outside.iterdir()) == [] and daemon.snapshot()["waiting"] == {}


def test_opening_refuses_a_name_that_changed_since_it_was_looked_at(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    path = make_photo(inbox / "a.jpg")
    seen = os.lstat(path)
    with open_inbox_file(path, inbox, expected=seen) as opened:
        assert opened.reader.read_bytes() == path.read_bytes()
        os.rename(make_photo(inbox / "b.jpg", seed=2), path)  # replaced after opening
        assert opened.reader.read_bytes() != path.read_bytes()  # still reads what it opened
        assert not opened.still_named()
        with pytest.raises(Replaced):
            opened.unlink()
    with pytest.raises(Replaced):  # replaced between the look and the open
        open_inbox_file(path, inbox, expected=seen)
    path.unlink()
    os.symlink(tmp_path / "elsewhere.jpg", path)
    with pytest.raises(Replaced):  # now a link: never opened
        open_inbox_file(path, inbox)
