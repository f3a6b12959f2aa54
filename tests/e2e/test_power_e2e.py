"""`rotwatchd run` (real model, subprocess) against a fake cpufreq tree: idle -> powersave
within idle_timeout + 1 s, a new file wakes it and is processed, SIGTERM while asleep puts the
original governors back, a refused governor write is logged once and never fatal."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_photo, wait_until
from helpers.fake_sysfs import make_cpufreq_tree, read_governors
from helpers.service_process import NotifySocket, ServiceProcess

pytestmark = pytest.mark.timeout(180)

ORIGINAL = ["schedutil", "ondemand"]
IDLE = 0.5


def write_config(folder: Path, cpu: Path, **power: object) -> Path:
    (folder / "inbox").mkdir(exist_ok=True)
    settings = {"idle_timeout": f"{int(IDLE * 1000)}ms", "cpufreq_path": str(cpu), **power}
    config = folder / "rotwatchd.yaml"
    config.write_text(
        "inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n"
        "watch: {quiet_period: 200ms}\nmodel: {min_confidence: 0}\n"
        f"power: {json.dumps(settings)}\n"
    )
    return config


def _power_status(folder: Path) -> dict[str, object]:
    try:
        document = json.loads((folder / "state" / "status.json").read_text())
    except (OSError, ValueError):  # not written yet
        return {}
    power: dict[str, object] = document.get("power", {})
    return power


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def test_sleep_wake_process_and_sigterm_while_asleep(tmp_path: Path, notify: NotifySocket) -> None:
    cpu = make_cpufreq_tree(tmp_path / "cpu", tuple(ORIGINAL))
    config = write_config(tmp_path, cpu, release_model_when_idle=True)
    daemon = ServiceProcess(config, tmp_path / "daemon.log", notify)
    try:
        notify.expect(lambda m: "READY=1" in m, timeout=90, alive=daemon.check_alive)
        ready_at = time.monotonic()
        wait_until(lambda: read_governors(cpu) == ["powersave", "powersave"], timeout=IDLE + 1.0)
        assert time.monotonic() - ready_at <= IDLE + 1.0

        photo = make_photo(tmp_path / "staging.jpg", correction=90, size=(320, 240))
        os.rename(photo, tmp_path / "inbox" / "turned.jpg")
        wait_until(lambda: (tmp_path / "outbox" / "turned.jpg").is_file(), timeout=60)
        log = daemon.text()
        # Woken (governors restored, model reloaded) before the model ran on the file.
        assert log.index("power: awake") < log.index("woke up in")
        assert "(event -> inference start; the wake itself" in log
        # status.json is rewritten at most twice a second: wait for the one after the wake.
        wait_until(lambda: _power_status(tmp_path).get("wakes", 0) >= 1, timeout=10)

        # Back to sleep, then SIGTERM while asleep: the originals come back, exit code 0.
        wait_until(lambda: read_governors(cpu) == ["powersave", "powersave"], timeout=IDLE + 5)
        wait_until(lambda: "sleeping" in daemon.text().split("woke up in")[-1], timeout=10)
        assert daemon.stop(signal.SIGTERM) == 0, daemon.text()
    finally:
        daemon.stop()
    assert read_governors(cpu) == ORIGINAL
    assert "power: governors restored" in daemon.text()


def test_refused_and_unavailable_governors_are_logged_once_and_never_fatal(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """Policy 0 lacks powersave; policy 1's file is read-only to the unprivileged daemon."""
    cpu = make_cpufreq_tree(tmp_path / "cpu", ("ondemand",), available="ondemand performance")
    extra = cpu / "cpufreq" / "policy1"
    extra.mkdir()
    (extra / "scaling_governor").write_text("schedutil\n")
    (extra / "scaling_available_governors").write_text("schedutil powersave\n")
    (extra / "scaling_governor").chmod(0o444)
    config = write_config(tmp_path, cpu)
    daemon = ServiceProcess(config, tmp_path / "daemon.log", notify, unprivileged=True)
    try:
        notify.expect(lambda m: "READY=1" in m, timeout=90, alive=daemon.check_alive)
        wait_until(lambda: "sleeping" in daemon.text(), timeout=IDLE + 5)
        make_photo(tmp_path / "inbox" / "a.jpg", correction=180, size=(320, 240))
        wait_until(lambda: (tmp_path / "outbox" / "a.jpg").is_file(), timeout=60)
        wait_until(lambda: daemon.text().count("sleeping") >= 2, timeout=IDLE + 5)
        text = daemon.text()
        assert text.count("'powersave' not available") == 1
        assert text.count("cannot set policy1 governor") == 1
        assert "Permission denied" in text
    finally:
        assert daemon.stop() == 0, daemon.text()
    assert read_governors(cpu) == ["ondemand", "schedutil"]
