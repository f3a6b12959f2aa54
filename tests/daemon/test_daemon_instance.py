"""One daemon per state folder: a second one on the same journal and review queue is refused in
one line (it would redo files the first is processing and count them twice)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, make_photo

from rotwatchd.cli import main
from rotwatchd.service.daemon import AlreadyRunning


def test_a_second_daemon_on_the_same_state_is_refused_until_the_first_stops(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    first, results = daemon_factory(config)
    with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}.*{config.state_dir}"):
        daemon_factory(config, start=False)
    make_photo(config.inboxes[0].path / "a.jpg", correction=90)
    assert results.wait_count(1)[0].outcome == "done"  # the first goes on, untouched
    first.stop()
    second, again = daemon_factory(config)  # the lock went with the first daemon
    make_photo(config.inboxes[0].path / "b.jpg", correction=90)
    assert again.wait_count(1)[0].path.name == "b.jpg"


def test_rotwatchd_run_beside_a_running_daemon_says_so_in_one_line(
        tmp_path: Path, daemon_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inbox").mkdir()
    yaml = tmp_path / "rotwatchd.yaml"
    yaml.write_text("inboxes:\n  - path: inbox\n    output: outbox\nstate_dir: state\n"
                    "web:\n  listen: null\n")
    running = fast_config(tmp_path)
    daemon_factory(running)
    assert main(["run", "-c", str(yaml)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rotwatchd: another rotwatchd (pid {os.getpid()}) runs with state in "
                   f"{running.state_dir}; stop it first, or give this one its own state_dir"]
