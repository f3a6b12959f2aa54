"""sd_notify over real AF_UNIX datagram sockets owned by the test (path and abstract)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotwatchd.service.notify import (
    Heartbeat,
    SystemdNotifier,
    monotonic_usec,
    socket_address,
    watchdog_interval,
)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_path_socket_messages(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("watching 1 inbox")
    assert receive(sock) == ["READY=1", "STATUS=watching 1 inbox"]
    before = monotonic_usec()
    assert notifier.reloading()
    lines = receive(sock)
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    assert before <= int(lines[1].split("=")[1]) <= monotonic_usec()
    notifier.status("queue 3\nok 2")  # a newline would end the assignment: flattened
    assert receive(sock) == ["STATUS=queue 3 ok 2"]
    notifier.watchdog()
    assert receive(sock) == ["WATCHDOG=1"]
    notifier.stopping()
    assert receive(sock) == ["STOPPING=1"]
    notifier.close()


def test_abstract_socket() -> None:
    name = f"rotwatchd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert receive(sock) == ["READY=1"]
        notifier.close()


def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and not notifier.ready() and notifier.watchdog_interval is None


def test_unreachable_socket_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING):
        assert not notifier.ready()
        assert not notifier.watchdog()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1
    notifier.close()


def test_a_reader_that_stalls_never_blocks_the_sender(
    listener: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    """systemd busy or hung: the socket's queue fills; sends fail fast instead of hanging a
    worker thread (a blocking send here once hung the daemon's shutdown)."""
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.WARNING):
        sent = [notifier.status(f"message {i}") for i in range(2000)]
    assert sent[0] and not all(sent)
    assert len([r for r in caplog.records if "cannot notify" in r.getMessage()]) == 1
    assert receive(sock) == ["STATUS=message 0"]  # what was queued is intact
    notifier.close()


def test_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@sd") == "\0sd"
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None


def test_watchdog_interval_rules() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_interval({}, 42) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_needs_every_loop(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.settimeout(0.2)
    clock = Clock()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    beat = Heartbeat(notifier, status=lambda: "queue 0", clock=clock)
    a, b = beat.register(), beat.register()
    assert beat.timeout(a) == 1.0
    clock.now = 0.5
    assert not beat.beat(a)  # too early
    assert beat.timeout(a) == 1.0  # already counted for the coming ping
    assert beat.timeout(b) == 0.5  # must turn by the time the ping is due
    clock.now = 1.2
    assert not beat.beat(a)  # b has not turned yet: a stuck loop blocks the ping
    assert beat.beat(b)
    assert receive(sock) == ["WATCHDOG=1", "STATUS=queue 0"]
    beat.unregister(b)
    clock.now = 2.3
    assert beat.beat(a) and beat.sent == 2
    notifier.close()


def test_heartbeat_off_without_watchdog(listener: tuple[socket.socket, str]) -> None:
    beat = Heartbeat(SystemdNotifier({"NOTIFY_SOCKET": listener[1]}))
    token = beat.register()
    assert beat.timeout(token) is None and not beat.beat(token)


def test_status_line_from_a_status_document() -> None:
    from rotwatchd.service.supervision import status_line

    document = {
        "queue": {"depth": 2, "running": 1, "pending": 3},
        "counts": {"done": 40, "error": 0, "review": 3},
        "power": {"state": "awake"},
    }
    expected = "queue 2 (1 running, 3 settling); done 40, review 3; power awake"
    assert status_line(document) == expected
    assert status_line({}) == "queue 0 (0 running, 0 settling); no files yet; power unknown"


def test_idle_worker_loops_keep_the_watchdog_fed(listener: tuple[socket.socket, str]) -> None:
    """Two idle workers blocked on an empty queue still turn and ping at the interval; a stop
    ends them promptly (the heartbeat's timeout never delays shutdown)."""
    from rotwatchd.watch.workqueue import Worker, WorkQueue

    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    beat = Heartbeat(notifier)
    queue = WorkQueue(4)
    workers = [Worker(queue, lambda item: None, f"w{i}", heartbeat=beat) for i in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(5):
            assert receive(sock) == ["WATCHDOG=1"]
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(5)
    assert not any(worker.is_alive() for worker in workers)
    notifier.close()
