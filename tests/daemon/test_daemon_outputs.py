"""What happens to originals and odd arrivals: move/delete policies, folders moved in, GIFs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import MarkerClassifier, fast_config, make_photo, red_edge, wait_until
from PIL import Image

from rotwatchd.service.journal import Journal


def test_original_move_puts_it_in_done_dir_after_the_copy(tmp_path: Path,
                                                          daemon_factory: Any) -> None:
    config = fast_config(tmp_path, output={"original": "move", "done_dir": "done"})
    daemon, results = daemon_factory(config)
    data = make_photo(config.inboxes[0].path / "sub" / "m.jpg", correction=90).read_bytes()
    (result,) = results.wait_count(1)
    assert result.outcome == "done"
    assert (tmp_path / "done" / "sub" / "m.jpg").read_bytes() == data
    assert not (config.inboxes[0].path / "sub" / "m.jpg").exists()
    with Image.open(config.inboxes[0].output / "sub" / "m.jpg") as im:
        assert red_edge(im)[0] == "top"


def test_original_delete_only_after_the_copy_exists(tmp_path: Path,
                                                    daemon_factory: Any) -> None:
    config = fast_config(tmp_path, output={"original": "delete"})
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "d.jpg", correction=180)
    (config.inboxes[0].path / "broken.jpg").write_bytes(b"not an image")
    results.wait_count(2)
    assert not (config.inboxes[0].path / "d.jpg").exists()
    assert (config.inboxes[0].output / "d.jpg").exists()
    # a bad file is never deleted, whatever the policy: it is quarantined
    assert (config.inboxes[0].quarantine / "broken.jpg").read_bytes() == b"not an image"


def test_folder_moved_into_the_inbox(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    album = tmp_path / "album"
    for i in range(3):
        make_photo(album / "inner" / f"{i}.jpg", correction=270, seed=i)
    os.rename(album, config.inboxes[0].path / "album")
    results.wait_count(3)
    for i in range(3):
        with Image.open(config.inboxes[0].output / "album" / "inner" / f"{i}.jpg") as im:
            assert red_edge(im)[0] == "top"


def test_animated_gif_goes_to_review_untouched(tmp_path: Path, daemon_factory: Any,
                                               classifier: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue", "green")]
    staging = tmp_path / "anim.gif"
    frames[0].save(staging, save_all=True, append_images=frames[1:], duration=100)
    data = staging.read_bytes()
    os.rename(staging, config.inboxes[0].path / "anim.gif")
    (result,) = results.wait_count(1)
    assert result.outcome == "review" and "animated" in result.detail
    assert (config.inboxes[0].review / "anim.gif").read_bytes() == data
    assert classifier.calls == 0


def test_non_recursive_inbox_ignores_subfolders(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, inboxes=[{"path": "inbox", "output": "outbox",
                                             "recursive": False}])
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "deep" / "no.jpg")
    make_photo(config.inboxes[0].path / "yes.jpg")
    results.wait_count(1)
    assert [r.path.name for r in results.items] == ["yes.jpg"]
    daemon.stop()
    with Journal(config.state_dir) as journal:
        assert journal.counts()["done"] == 1


def test_write_failure_is_an_error_kept_in_the_inbox_and_retried(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    outbox = config.inboxes[0].output
    outbox.mkdir()
    (outbox / "sub").write_bytes(b"a file where a folder must go")
    daemon, results = daemon_factory(config)
    photo = make_photo(config.inboxes[0].path / "sub" / "e.jpg", correction=90)
    result = results.wait_count(1)[0]
    assert result.outcome == "error" and photo.exists()
    (outbox / "sub").unlink()
    os.utime(photo)  # any new event (or the next rescan) retries it
    with open(photo, "ab"):
        pass
    results.wait_for(lambda items: items[-1].outcome == "done")
    with Image.open(outbox / "sub" / "e.jpg") as im:
        assert red_edge(im)[0] == "top"


class BlindObserver:
    """An observer that sees nothing: what an inotify queue overflow looks like."""

    def schedule(self, event_handler: Any, path: str, *, recursive: bool = False) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


def test_periodic_rescan_finds_missed_files_and_never_redoes_done_ones(
        tmp_path: Path, daemon_factory: Any, classifier: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.1, "rescan_interval": 0.2})
    daemon, results = daemon_factory(config, observer_factory=lambda polling: BlindObserver())
    make_photo(config.inboxes[0].path / "missed.jpg", correction=90)
    results.wait_count(1)
    assert results.items[0].outcome == "done"
    passes = daemon.rescans
    wait_until(lambda: daemon.rescans >= passes + 3)
    assert classifier.calls == 1 and len(results.items) == 1 and not results.skipped


class RescansWhileClassifying(MarkerClassifier):
    """Holds each picture until ``rescans_done()`` is true: full rescans run while it is
    being processed."""

    def __init__(self) -> None:
        super().__init__()
        self.rescans_done: Callable[[], bool] = lambda: True

    def predict(self, image: Image.Image) -> Any:
        wait_until(self.rescans_done)
        return super().predict(image)


def test_rescans_during_processing_leave_the_file_to_its_run(
        tmp_path: Path, daemon_factory: Any) -> None:
    classifier = RescansWhileClassifying()
    config = fast_config(tmp_path, watch={"quiet_period": 0.1, "rescan_interval": 0.05})
    daemon, results = daemon_factory(config, observer_factory=lambda polling: BlindObserver(),
                                     classifier_factory=lambda model: classifier)
    start = daemon.rescans
    classifier.rescans_done = lambda: daemon.rescans >= start + 4
    make_photo(config.inboxes[0].path / "slow.jpg", correction=90)
    results.wait_count(1)
    after = daemon.rescans
    wait_until(lambda: daemon.rescans >= after + 3)
    assert classifier.calls == 1 and [r.outcome for r in results.items] == ["done"]
    assert not results.skipped  # no second pass that hashed it only to find it done
