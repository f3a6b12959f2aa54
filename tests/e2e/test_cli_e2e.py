"""End to end with the real model and the real ``rotwatchd`` command in a subprocess.

Includes the acceptance scenario: 50 images arriving by slow partial writes,
renames and copies into subfolders, a SIGTERM and restart in the middle; every output appears
under its relative name, every original stays byte-identical, nothing is processed twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_photo, red_edge, wait_until
from PIL import Image

from rotwatchd.service.journal import Journal

pytestmark = pytest.mark.timeout(300)


def _command() -> list[str]:
    script = Path(sys.executable).parent / "rotwatchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotwatchd"]


class DaemonProcess:
    """``rotwatchd run -c CONFIG`` with stderr captured to a file the test can search.

    Every instance is registered so the ``daemons`` fixture kills leftovers of a failed test.
    """

    started: list[DaemonProcess] = []

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._log_handle = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*_command(), "run", "-c", str(config)],
                                     stderr=self._log_handle, stdout=subprocess.DEVNULL,
                                     cwd=config.parent)
        DaemonProcess.started.append(self)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log_handle.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, fragment: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.text()}")
            return fragment in self.text()
        wait_until(seen, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_handle.close()


@pytest.fixture(autouse=True)
def daemons() -> Iterator[None]:
    """Kill any daemon a failing test left running (and close its log)."""
    yield
    while DaemonProcess.started:
        DaemonProcess.started.pop().kill()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A config (min_confidence 0: every image gets an output; a broken-looking file is
    quarantined once unchanged for 1 s instead of 30 min) and its folder."""
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "rotwatchd.yaml"
    config.write_text("inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n"
                      "watch: {quiet_period: 300ms, unfinished_wait: 1s}\n"
                      "model: {min_confidence: 0}\n")
    yield tmp_path, config


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _slow_copy(data: bytes, target: Path, pause: float = 0.45) -> None:
    """Write in 4 chunks with pauses longer than the quiet period, then close."""
    step = len(data) // 4 + 1
    gap = threading.Event()
    with open(target, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start:start + step])
            handle.flush()
            gap.wait(pause)


def _done_lines(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if " -> " in line and "rotwatchd.service.processor" in line]


def _assert_rotated_copy(source: Path, output: Path, correction: int) -> None:
    with Image.open(source) as src, Image.open(output) as out:
        expected = np.asarray(src.convert("RGB").rotate(-correction, expand=True), np.int16)
        got = np.asarray(out.convert("RGB"), np.int16)
    assert got.shape == expected.shape, output
    assert np.abs(got - expected).mean() < 3.0, output


def test_acceptance_fifty_images_with_restart(workspace: tuple[Path, Path]) -> None:
    root, config = workspace
    inbox, outbox, staging = root / "inbox", root / "outbox", root / "staging"
    plan: list[tuple[str, str, int | None]] = []  # (relative name, how, exif orientation)
    for i in range(50):
        folder = ["", "a/", "b/c/", "a/deep/", "d/"][i // 12]
        how = ["slow", "rename", "copy", "rename", "copy"][i % 5]
        tag = [None, 6, None, 3, 8][i % 5] if i % 2 else None
        plan.append((f"{folder}img{i % 12:02d}.jpg", how, tag))
    assert len({name for name, _, _ in plan}) == 50  # same names, different subfolders
    sources: dict[str, Path] = {}
    for i, (name, _, tag) in enumerate(plan):
        turn = 0 if tag else [0, 90, 180, 270][i % 4]  # tagged: the tag alone fixes it
        sources[name] = make_photo(staging / name, correction=turn,
                                   exif_orientation=tag, size=(640, 480), seed=i)
    digests = {name: _sha(path) for name, path in sources.items()}

    def deliver(batch: list[tuple[str, str, int | None]]) -> None:
        writers = []
        for name, how, _ in batch:
            target = inbox / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if how == "rename":
                os.rename(shutil.copy2(sources[name], staging / f"{name}.moving"), target)
            elif how == "copy":
                shutil.copy2(sources[name], target)
            else:
                writers.append(threading.Thread(target=_slow_copy,
                                                args=(sources[name].read_bytes(), target)))
                writers[-1].start()
        for writer in writers:
            writer.join()

    first = DaemonProcess(config, root / "run1.log")
    first.wait_log("running:")
    deliver(plan[:25])
    wait_until(lambda: len(_done_lines(first.text())) >= 25, timeout=120)
    assert first.stop() == 0
    deliver(plan[25:40])  # arrive while the daemon is stopped: found by the startup rescan
    second = DaemonProcess(config, root / "run2.log")
    second.wait_log("running:")
    deliver(plan[40:])
    wait_until(lambda: len(_done_lines(second.text())) >= 25, timeout=120)
    assert second.stop() == 0

    logs = first.text() + second.text()
    done = _done_lines(logs)
    assert len(done) == 50, "\n".join(done)  # nothing processed twice across the restart
    with Journal(root / "state") as journal:
        assert journal.counts()["done"] == 50 and journal.counts()["in-progress"] == 0
        for name, _, tag in plan:
            assert _sha(inbox / name) == digests[name], name  # originals byte-identical
            record = journal.lookup(str(inbox / name), digests[name])
            assert record is not None and record.outcome == "done", name
            assert record.correction is not None
            if tag is not None:
                assert record.source == "exif"
                with Image.open(outbox / name) as im:
                    assert red_edge(im)[0] == "top", name
            else:
                assert record.source == "model"
                _assert_rotated_copy(inbox / name, outbox / name, record.correction)
    assert not list(outbox.rglob("*.rwtmp"))


def test_bad_inputs_are_refused_while_the_daemon_keeps_running(
        workspace: tuple[Path, Path]) -> None:
    root, config = workspace
    inbox = root / "inbox"
    daemon = DaemonProcess(config, root / "run.log")
    daemon.wait_log("running:")
    good = make_photo(root / "good.jpg", size=(320, 240)).read_bytes()
    (inbox / "corrupt.jpg").write_bytes(good[:300] + b"\x00" * 2000)
    (inbox / "text.jpg").write_text("hello, I am not a picture\n")
    (inbox / "zero.jpg").write_bytes(b"")
    os.symlink("/etc/passwd", inbox / "passwd.jpg")
    for name in ("corrupt.jpg", "text.jpg", "zero.jpg", "passwd.jpg"):
        daemon.wait_log(f"quarantined {inbox / name}")
    (inbox / "fine.jpg").write_bytes(good)
    daemon.wait_log(f"{inbox / 'fine.jpg'} -> ")
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    assert sorted(p.name for p in (root / "state" / "quarantine").iterdir()) == \
        ["corrupt.jpg", "passwd.jpg", "text.jpg", "zero.jpg"]


def test_sigterm_drains_and_exits_zero_and_status_reads_the_running_daemon(
        workspace: tuple[Path, Path]) -> None:
    root, config = workspace
    daemon = DaemonProcess(config, root / "run.log")
    daemon.wait_log("running:")
    for i in range(6):
        make_photo(root / "inbox" / f"s{i}.jpg", correction=90, size=(640, 480), seed=i)
    daemon.wait_log(" -> ")

    def status_once() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_command(), "status", "-c", str(config), "--json"],
                              capture_output=True, text=True, timeout=60)

    # status.json is published at most every 0.5 s: the first file can finish before the
    # "running" state reaches it, so wait for that state rather than reading the file once
    status = wait_until(lambda: (s := status_once()).returncode == 0 and s, timeout=30.0,
                        step=0.2)
    assert status.returncode == 0, status.stderr
    document: dict[str, Any] = json.loads(status.stdout)
    assert document["running"] is True and document["pid"] == daemon.proc.pid
    assert set(document["counts"]) >= {"done", "review", "quarantined", "error"}
    assert "power" in document and "queue" in document
    assert daemon.stop(signal.SIGTERM) == 0
    with Journal(root / "state") as journal:
        assert journal.counts()["in-progress"] == 0  # the current file was finished
    assert not list((root / "outbox").rglob("*.rwtmp"))
    human = subprocess.run([*_command(), "status", "-c", str(config)], capture_output=True,
                           text=True, timeout=60)
    assert human.returncode == 3 and "not running" in human.stdout


def test_check_json_with_the_real_model(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "plain.jpg", size=(640, 480))
    done = subprocess.run([*_command(), "check", "--json", str(photo)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    answer = json.loads(line)
    assert set(answer) >= {"path", "correction", "confidence", "source", "decision"}
    assert answer["source"] == "model" and answer["correction"] in (0, 90, 180, 270)
    assert 0.0 <= answer["confidence"] <= 1.0
    assert answer["decision"] in ("keep", "rotate", "review")


def test_fix_with_the_real_model(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(3):
        make_photo(src / f"f{i}.jpg", correction=[0, 90, 180][i], size=(640, 480), seed=i)
    done = subprocess.run([*_command(), "fix", str(src), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stderr
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*.jpg"))
    assert len(written) == 3


def test_output_to_a_reader_that_went_away_is_silent(tmp_path: Path) -> None:
    """``rotwatchd config keys | head -1``: the reader leaves first; no traceback, no error
    line, the shell's broken-pipe status."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before anything is written: every write fails with EPIPE
    try:
        done = subprocess.run([*_command(), "config", "keys"], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=60, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert done.stderr == b""
    assert done.returncode == 141


def test_fix_on_a_terminal_shows_a_progress_bar_and_the_summary(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    for i, tag in enumerate((6, 3, 8)):
        make_photo(tmp_path / "in" / f"{i}.jpg", exif_orientation=tag)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    try:
        process = subprocess.Popen([*_command(), "fix", "in", "-o", "out"], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 1  # one image failed
    finally:
        os.close(master)
    screen = b"".join(chunks).decode()
    assert "4/4" in screen and "file" in screen  # the bar reached the end
    assert screen.count("ERROR rotwatchd.fix.oneshot: in/broken.jpg") == 1  # above the bar
    assert screen.rstrip().endswith("3 written, 0 to review, 1 failed, 0 skipped (not images)")
    for i in range(3):
        with Image.open(tmp_path / "out" / f"{i}.jpg") as image:
            assert red_edge(image)[0] == "top"
