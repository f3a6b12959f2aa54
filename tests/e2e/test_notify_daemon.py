"""`rotwatchd run` talking to a notify socket the test owns, as it would to systemd:
READY=1 after the watches exist, WATCHDOG=1 from the worker loop, STATUS= lines,
RELOADING=1/READY=1 around SIGHUP (valid and invalid config), STOPPING=1 on SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_photo, wait_until
from helpers.fake_sysfs import make_cpufreq_tree
from helpers.service_process import NotifySocket, ServiceProcess

pytestmark = pytest.mark.timeout(180)

CONFIG = """\
inboxes: [{{path: inbox, output: outbox}}]
state_dir: state
watch: {{quiet_period: 200ms}}
model: {{min_confidence: 0}}
power: {{idle_timeout: {idle}, cpufreq_path: {cpu}}}
"""


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def test_notify_protocol_through_a_whole_service_life(tmp_path: Path, notify: NotifySocket) -> None:
    (tmp_path / "inbox").mkdir()
    cpu = make_cpufreq_tree(tmp_path / "cpu", ("schedutil",))
    config = tmp_path / "rotwatchd.yaml"
    config.write_text(CONFIG.format(idle="1h", cpu=cpu))
    daemon = ServiceProcess(config, tmp_path / "daemon.log", notify, watchdog_usec=400_000)
    alive = daemon.check_alive
    try:
        ready = notify.expect(lambda m: "READY=1" in m, timeout=90, alive=alive)
        # READY=1 only after the inboxes are watched: the startup log line comes first.
        assert "running: 1 inbox(es)" in daemon.text()
        status = next(a for a in ready if a.startswith("STATUS="))
        assert "queue 0" in status and "power awake" in status

        # Watchdog pings keep coming at about half of WATCHDOG_USEC (0.2 s), each with STATUS=.
        first = notify.expect(lambda m: "WATCHDOG=1" in m, timeout=5, alive=alive)
        start = time.monotonic()
        for _ in range(4):
            notify.expect(lambda m: "WATCHDOG=1" in m, timeout=5, alive=alive)
        assert time.monotonic() - start < 4.0
        assert any(a.startswith("STATUS=queue ") for a in first)

        # Work arriving and finishing each send a STATUS= line with the counts.
        make_photo(tmp_path / "inbox" / "p.jpg", correction=90, size=(320, 240))
        notify.expect(lambda m: any("done 1" in a for a in m if a.startswith("STATUS=")),
                      timeout=60, alive=alive)

        # SIGHUP with a valid new file: RELOADING=1 (with MONOTONIC_USEC) then READY=1.
        config.write_text(CONFIG.format(idle="30m", cpu=cpu))
        daemon.send(signal.SIGHUP)
        reloading = notify.expect(lambda m: "RELOADING=1" in m, timeout=30, alive=alive)
        assert any(a.startswith("MONOTONIC_USEC=") and int(a[15:]) > 0 for a in reloading)
        notify.expect(lambda m: "READY=1" in m, timeout=30, alive=alive)
        wait_until(lambda: "configuration reloaded" in daemon.text(), timeout=10)

        # SIGHUP with an invalid file: rejected with a clear line, old config kept, still ready.
        config.write_text(CONFIG.format(idle="soon", cpu=cpu))
        daemon.send(signal.SIGHUP)
        notify.expect(lambda m: "RELOADING=1" in m, timeout=30, alive=alive)
        rejected = notify.expect(lambda m: "READY=1" in m, timeout=30, alive=alive)
        assert any("reload rejected" in a for a in rejected)
        wait_until(lambda: "reload rejected, keeping the old configuration" in daemon.text(),
                   timeout=10)
        assert "power.idle_timeout" in daemon.text()  # the line names the key
        notify.expect(lambda m: "WATCHDOG=1" in m, timeout=5, alive=alive)  # still alive

        daemon.send(signal.SIGTERM)
        notify.expect(lambda m: "STOPPING=1" in m, timeout=30)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.text()


def test_watchdog_pings_continue_while_asleep(tmp_path: Path, notify: NotifySocket) -> None:
    (tmp_path / "inbox").mkdir()
    cpu = make_cpufreq_tree(tmp_path / "cpu", ("schedutil",))
    config = tmp_path / "rotwatchd.yaml"
    config.write_text(CONFIG.format(idle="200ms", cpu=cpu))
    daemon = ServiceProcess(config, tmp_path / "daemon.log", notify, watchdog_usec=400_000)
    alive = daemon.check_alive
    try:
        notify.expect(lambda m: "READY=1" in m, timeout=90, alive=alive)
        notify.expect(lambda m: any(a == "STATUS=queue 0 (0 running, 0 settling); no files yet; "
                                    "power asleep" for a in m), timeout=10, alive=alive)
        for _ in range(3):  # the parked worker loop still turns and pings
            notify.expect(lambda m: "WATCHDOG=1" in m and any("power asleep" in a for a in m),
                          timeout=5, alive=alive)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.text()
