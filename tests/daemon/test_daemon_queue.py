"""Queue pressure, inotify fallback, reload and status of a running daemon."""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import MarkerClassifier, fast_config, make_photo, red_edge, wait_until
from PIL import Image

from rotwatchd.config import ConfigError, ModelConfig
from rotwatchd.model.base import Prediction
from rotwatchd.service.daemon import Lifecycle
from rotwatchd.service.status import read_status
from rotwatchd.watch.watcher import make_observer


class GatedClassifier(MarkerClassifier):
    """Blocks every prediction until the test opens the gate; counts who is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Semaphore(0)

    def predict(self, image: Image.Image) -> Prediction:
        self.waiting.release()
        assert self.gate.wait(30), "test never opened the gate"
        return super().predict(image)


def _gated(gated: GatedClassifier) -> Any:
    def build(model: ModelConfig) -> GatedClassifier:
        return gated
    return build


def test_full_queue_keeps_files_pending_and_drops_none(tmp_path: Path,
                                                       daemon_factory: Any) -> None:
    gated = GatedClassifier()
    config = fast_config(tmp_path, queue_size=1, workers=1)
    daemon, results = daemon_factory(config, classifier_factory=_gated(gated))
    for i in range(6):
        make_photo(config.inboxes[0].path / f"p{i}.jpg", correction=90, seed=i)
    assert gated.waiting.acquire(timeout=10)  # one file is inside predict
    # the queue holds one more; the other four wait in the settler, not dropped
    def queue_state() -> dict[str, int]:
        return dict(daemon.snapshot()["queue"])
    wait_until(lambda: queue_state() == {"depth": 1, "running": 1, "pending": 4,
                                         "capacity": 1})
    gated.gate.set()
    results.wait_count(6, timeout=30)
    assert {r.outcome for r in results.items} == {"done"}
    assert len(list(config.inboxes[0].output.iterdir())) == 6


def test_inotify_failure_falls_back_to_polling_with_a_clear_line(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    def no_inotify(polling: bool) -> Any:
        if not polling:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return make_observer(True)

    caplog.set_level(logging.INFO)
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config, observer_factory=no_inotify)
    assert daemon.watchers[0].polling
    lines = [r.getMessage() for r in caplog.records if "falling back to polling" in r.getMessage()]
    assert len(lines) == 1 and "max_user_watches" in lines[0]
    make_photo(config.inboxes[0].path / "x.jpg", correction=180)
    (result,) = results.wait_count(1)
    assert result.outcome == "done"


def test_reload_keeps_queued_files_and_applies_the_new_config(
        tmp_path: Path, daemon_factory: Any) -> None:
    gated = GatedClassifier()
    config = fast_config(tmp_path, workers=1)
    daemon, results = daemon_factory(config, classifier_factory=_gated(gated))
    for i in range(3):
        make_photo(config.inboxes[0].path / f"q{i}.jpg", correction=270, seed=i)
    assert gated.waiting.acquire(timeout=10)
    new = fast_config(tmp_path, workers=2,
                      inboxes=[{"path": "inbox", "output": "outbox2"}])
    reloader = threading.Thread(target=daemon.reload, args=(new,))
    reloader.start()  # waits for the file inside predict
    gated.gate.set()
    reloader.join(20)
    assert not reloader.is_alive()
    def finished(names: set[str]) -> Any:
        return lambda items: names <= {r.path.name for r in items if r.outcome == "done"}
    results.wait_for(finished({"q0.jpg", "q1.jpg", "q2.jpg"}), timeout=30)
    assert len(daemon.workers) == 2
    make_photo(config.inboxes[0].path / "late.jpg", correction=90, seed=9)
    results.wait_for(finished({"late.jpg"}))
    with Image.open(tmp_path / "outbox2" / "late.jpg") as im:
        assert red_edge(im)[0] == "top"
    written = {p.name for p in (tmp_path / "outbox").iterdir()} | \
        {p.name for p in (tmp_path / "outbox2").iterdir()}
    assert written == {"q0.jpg", "q1.jpg", "q2.jpg", "late.jpg"}


def test_status_file_reflects_the_running_daemon(tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "s.jpg", correction=90)
    (config.inboxes[0].path / "bad.jpg").write_bytes(b"nope")
    results.wait_count(2)
    daemon.mark_status_dirty()
    def published() -> dict[str, Any] | None:
        status = read_status(config.state_dir)
        counts = status["counts"] if status else {}
        return status if counts.get("done") == 1 and counts.get("quarantined") == 1 else None
    status = wait_until(published)
    assert status is not None and status["running"] is True
    assert status["queue"]["depth"] == 0 and status["power"] == {"state": "unmanaged"}
    assert status["last_errors"][0]["path"].endswith("bad.jpg")
    daemon.stop()
    final = read_status(config.state_dir)
    assert final is not None and final["running"] is False and final["state"] == "stopped"


class NonReentrantClassifier(MarkerClassifier):
    """Fails like a LiteRT interpreter if two threads predict with it at once."""

    def __init__(self, overlap: threading.Barrier) -> None:
        super().__init__()
        self._busy = threading.Lock()
        self._overlap = overlap

    def predict(self, image: Image.Image) -> Prediction:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("There is at least 1 reference to internal data")
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                self._overlap.wait()  # hold on until the other worker is inside predict too
            return super().predict(image)
        finally:
            self._busy.release()


def test_two_workers_use_the_one_classifier_in_turn(tmp_path: Path,
                                                    daemon_factory: Any) -> None:
    """Each prediction waits (up to 1 s) for another one to overlap it: none can, as the
    workers lease the daemon's one classifier in turn (a shared interpreter used by two
    threads at once raises, which would make a file fail)."""
    overlap = threading.Barrier(2, timeout=1)
    made: list[NonReentrantClassifier] = []

    def build(model: ModelConfig) -> NonReentrantClassifier:
        made.append(NonReentrantClassifier(overlap))
        return made[-1]

    config = fast_config(tmp_path, workers=2)
    daemon, results = daemon_factory(config, classifier_factory=build)
    for i in range(4):
        make_photo(config.inboxes[0].path / f"w{i}.jpg", correction=90, seed=i)
    results.wait_count(4, timeout=30)
    assert {r.outcome for r in results.items} == {"done"}
    assert len(made) == 1  # one, shared: never two at once
    assert overlap.broken  # the first prediction waited for a second one, which never came


def test_serve_forever_reloads_on_request_and_rejects_a_bad_config(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config, start=False)
    seen: list[str | None] = []

    class Reloads(Lifecycle):
        def on_reloaded(self, error: str | None) -> None:
            seen.append(error)

    daemon.add_lifecycle_listener(Reloads())
    server = threading.Thread(target=daemon.serve_forever)
    server.start()
    try:
        wait_until(lambda: daemon.workers)

        def broken() -> Any:
            raise ConfigError(["test.yaml: workers: must be at least 1, got 0"])
        daemon.request_reload(broken)
        wait_until(lambda: seen)
        assert seen[0] is not None and daemon.config is config
        assert any("reload rejected, keeping the old configuration: test.yaml: workers" in
                   r.getMessage() for r in caplog.records)
        new = fast_config(tmp_path, workers=2)
        daemon.request_reload(lambda: new)
        wait_until(lambda: len(seen) == 2)
        assert seen[1] is None and daemon.config is new and len(daemon.workers) == 2
        make_photo(config.inboxes[0].path / "after.jpg", correction=90)
        results.wait_count(1)
    finally:
        daemon.request_stop()
        server.join(30)
    assert not server.is_alive()
