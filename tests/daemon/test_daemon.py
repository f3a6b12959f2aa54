"""The daemon end to end in-process: real files, real watchdog threads, injected classifier."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from helpers import RED, fast_config, make_photo, red_edge
from PIL import Image

from rotwatchd.service.journal import Journal


def _upright_edge(path: Path) -> str:
    with Image.open(path) as im:
        return red_edge(im)[0]


def test_rotated_photo_gets_an_upright_copy_and_original_is_untouched(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    inbox = config.inboxes[0].path
    source = make_photo(tmp_path / "staging" / "cat.jpg", correction=90)
    original = source.read_bytes()
    os.rename(source, inbox / "cat.jpg")

    (result,) = results.wait_count(1)
    assert result.outcome == "done"
    assert result.decision is not None and result.decision.correction == 90
    assert result.decision.source == "model"
    output = config.inboxes[0].output / "cat.jpg"
    assert _upright_edge(output) == "top"
    assert (inbox / "cat.jpg").read_bytes() == original


def test_exif_orientation_is_trusted_without_the_model(
        tmp_path: Path, daemon_factory: Any, classifier: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "tagged.jpg", exif_orientation=6)

    (result,) = results.wait_count(1)
    assert result.decision is not None
    assert (result.decision.source, result.decision.correction) == ("exif", 90)
    assert classifier.calls == 0
    assert _upright_edge(config.inboxes[0].output / "tagged.jpg") == "top"


def test_upright_photo_is_copied_byte_identical(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    source = make_photo(config.inboxes[0].path / "fine.jpg")
    (result,) = results.wait_count(1)
    assert result.decision is not None and result.decision.action == "keep"
    assert (config.inboxes[0].output / "fine.jpg").read_bytes() == source.read_bytes()


def test_low_confidence_goes_to_review_as_a_copy(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    source = make_photo(config.inboxes[0].path / "fog.png", fmt="PNG", marker=False)
    (result,) = results.wait_count(1)
    assert result.outcome == "review"
    review = config.inboxes[0].review / "fog.png"
    assert review.read_bytes() == source.read_bytes()
    assert not (config.inboxes[0].output / "fog.png").exists()


def test_subfolders_keep_relative_names(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    inbox, outbox = config.inboxes[0].path, config.inboxes[0].output
    make_photo(inbox / "a" / "x.jpg", correction=180, seed=1)
    make_photo(inbox / "b" / "deeper" / "x.jpg", correction=270, seed=2)
    make_photo(inbox / "x.jpg", seed=3)
    results.wait_count(3)
    for rel in ("a/x.jpg", "b/deeper/x.jpg", "x.jpg"):
        assert _upright_edge(outbox / rel) == "top", rel


def test_slow_partial_write_is_processed_once_complete(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, watch={"quiet_period": 0.3})
    daemon, results = daemon_factory(config)
    data = make_photo(tmp_path / "src.jpg", correction=90, size=(400, 300)).read_bytes()
    target = config.inboxes[0].path / "slow.jpg"
    pause = threading.Event()
    with open(target, "wb") as handle:  # pauses longer than the quiet period, file kept open
        for start in range(0, len(data), len(data) // 4 + 1):
            handle.write(data[start:start + len(data) // 4 + 1])
            handle.flush()
            pause.wait(0.5)
            assert not results.items, "processed while still being written"
    (result,) = results.wait_count(1)
    assert result.outcome == "done"
    assert _upright_edge(config.inboxes[0].output / "slow.jpg") == "top"


def test_closed_file_is_processed_long_before_the_quiet_period_ends(
        tmp_path: Path, daemon_factory: Any) -> None:
    """close-after-write proves the file complete: it is taken at once (the 60 s quiet period
    is for files no event vouches for), so it is done within a wait far shorter than that."""
    config = fast_config(tmp_path, watch={"quiet_period": 60})
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "closed.jpg", correction=90)
    (result,) = results.wait_count(1, timeout=20)
    assert result.outcome == "done"
    assert _upright_edge(config.inboxes[0].output / "closed.jpg") == "top"


def test_temporary_names_are_ignored_until_renamed(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    inbox = config.inboxes[0].path
    temps = ["a.jpg.part", "b.jpg.tmp", "c.jpg~", "d.jpg.crdownload", ".syncthing.e.jpg.tmp",
             ".hidden.jpg"]
    for i, name in enumerate(temps):
        make_photo(inbox / name, seed=i)
    # a sentinel processed after the temp files were written proves they were seen and skipped
    make_photo(inbox / "sentinel.jpg", seed=99)
    results.wait_for(lambda items: any(r.path.name == "sentinel.jpg" for r in items))
    assert [r.path.name for r in results.items] == ["sentinel.jpg"]
    os.rename(inbox / "a.jpg.part", inbox / "a.jpg")
    results.wait_count(2)
    assert results.by_name()["a.jpg"].outcome == "done"
    assert sorted(p.name for p in config.inboxes[0].output.iterdir()) == ["a.jpg", "sentinel.jpg"]


def test_restart_does_not_reprocess_and_rescan_finds_files_added_while_stopped(
        tmp_path: Path, daemon_factory: Any, classifier: Any) -> None:
    config = fast_config(tmp_path)
    inbox = config.inboxes[0].path
    daemon, results = daemon_factory(config)
    make_photo(inbox / "one.jpg", correction=90)
    results.wait_count(1)
    daemon.stop()
    calls = classifier.calls
    make_photo(inbox / "two.jpg", correction=180, seed=5)  # arrives while stopped

    daemon2, results2 = daemon_factory(config)
    (result,) = results2.wait_count(1)
    assert result.path.name == "two.jpg" and result.outcome == "done"
    assert classifier.calls == calls + 1
    daemon2.stop()
    with Journal(config.state_dir) as journal:
        assert journal.counts()["done"] == 2


def test_crash_mid_file_is_redone_on_next_start(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    photo = make_photo(config.inboxes[0].path / "interrupted.jpg", correction=270)
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    st = photo.stat()
    with Journal(config.state_dir) as journal:  # what a run killed mid-file leaves behind
        journal.begin(str(photo), digest, st.st_size, st.st_mtime_ns)
    daemon, results = daemon_factory(config)
    (result,) = results.wait_count(1)
    assert result.outcome == "done"
    assert _upright_edge(config.inboxes[0].output / "interrupted.jpg") == "top"


def test_resent_events_do_not_reprocess(tmp_path: Path, daemon_factory: Any,
                                        classifier: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    photo = make_photo(config.inboxes[0].path / "touch.jpg", correction=90)
    results.wait_count(1)
    os.utime(photo)  # attribute change + a fresh close event with the same content
    with open(photo, "ab") as handle:
        handle.write(b"")
    results.wait_skipped(1)
    assert len(results.items) == 1 and classifier.calls == 1


def test_polling_mode_processes_files(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, inboxes=[{"path": "inbox", "output": "outbox",
                                             "polling": True}])
    daemon, results = daemon_factory(config)
    assert daemon.watchers[0].polling
    make_photo(config.inboxes[0].path / "sub" / "p.jpg", correction=180)
    (result,) = results.wait_count(1)
    assert result.outcome == "done"
    assert _upright_edge(config.inboxes[0].output / "sub" / "p.jpg") == "top"


def test_marker_photos_are_what_the_tests_think(tmp_path: Path) -> None:
    """Guards the test helpers themselves: the red bar lands where the correction says."""
    for correction, edge in ((0, "top"), (90, "left"), (180, "bottom"), (270, "right")):
        with Image.open(make_photo(tmp_path / f"{correction}.png", correction=correction,
                                   fmt="PNG")) as im:
            assert red_edge(im)[0] == edge
            arr = np.asarray(im)
            assert tuple(arr[arr.shape[0] // 2, arr.shape[1] // 2]) != RED


def test_review_threshold_follows_the_model_setting_across_a_reload(
        tmp_path: Path, daemon_factory: Any) -> None:
    """No min_confidence configured: the model's .json decides, and a reload that points
    model.path elsewhere brings that model's threshold (not the one read for the first)."""
    models = {}
    for name, threshold in (("strict", 0.999), ("lenient", 0.5)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "orientation.json").write_text(f'{{"min_confidence": {threshold}}}')
        models[name] = str(folder / "orientation.tflite")
    config = fast_config(tmp_path, model={"path": models["strict"]})
    daemon, results = daemon_factory(config)
    inbox = config.inboxes[0].path
    make_photo(inbox / "a.png", fmt="PNG", correction=90)  # marker confidence 0.99
    (first,) = results.wait_count(1)
    assert first.outcome == "review"
    daemon.reload(fast_config(tmp_path, model={"path": models["lenient"]}))
    make_photo(inbox / "b.png", fmt="PNG", correction=90)
    second = results.wait_count(2)[1]
    assert second.path.name == "b.png" and second.outcome == "done"
