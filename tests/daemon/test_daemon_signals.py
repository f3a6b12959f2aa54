"""``Daemon.serve_forever(reload_config)``, what ``rotwatchd run`` calls: SIGHUP reloads and
SIGTERM stops even when the kernel hands the signal to a thread other than the main one while
the main thread sleeps in read(2) on the wake pipe. CPython runs a Python-level handler only in
the main thread, when it next executes bytecode, so a handler that itself woke the main thread
would never run then: the reload or the stop was lost (seen about once in 50 runs of a daemon
under load). Real signals, real threads, the real daemon with the marker classifier."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from helpers import fast_config, wait_until

from rotwatchd.service.daemon import Lifecycle


def asleep_in_a_pipe_read(native_id: int) -> bool:
    """Whether that thread of this process sleeps in read(2) on a pipe, by its /proc wchan
    (``pipe_read``, ``anon_pipe_read`` on newer kernels). True where the kernel does not
    tell (wchan ``0`` or unreadable): the signal then merely may reach a busy main thread."""
    try:
        wchan = Path(f"/proc/self/task/{native_id}/wchan").read_text()
    except OSError:
        return True
    return wchan in ("", "0") or "pipe_read" in wchan


def test_signals_the_kernel_hands_to_another_thread_still_reload_and_stop(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config, start=False)
    new = fast_config(tmp_path, workers=2)
    # what the process had before the daemon (SIG_DFL, or SIG_IGN for SIGHUP under nohup)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    reloads: list[str | None] = []

    class Reloads(Lifecycle):
        def on_reloaded(self, error: str | None) -> None:
            reloads.append(error)

    daemon.add_lifecycle_listener(Reloads())
    main = threading.get_native_id()
    served = threading.Event()  # set once serve_forever() returned
    lost: list[str] = []

    def send_to_this_thread() -> None:
        """SIGHUP, then SIGTERM, each raised in this thread (pthread_kill to itself: the
        C-level handler runs here) while the main thread sleeps in the wake pipe's read."""
        try:
            wait_until(lambda: daemon.workers and asleep_in_a_pipe_read(main))
            signal.pthread_kill(threading.get_ident(), signal.SIGHUP)
            try:
                wait_until(lambda: reloads, timeout=20)
            except AssertionError:
                lost.append("SIGHUP: no reload")
                return
            wait_until(lambda: asleep_in_a_pipe_read(main))
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            if not served.wait(20):
                lost.append("SIGTERM: no stop")
        finally:
            if not served.is_set():
                daemon.request_stop()  # the test must end either way

    sender = threading.Thread(target=send_to_this_thread, name="signal-sender")
    sender.start()
    try:
        daemon.serve_forever(lambda: new)
    finally:
        served.set()
        sender.join(30)
    assert lost == []
    assert reloads == [None] and daemon.config is new
    for sig, handler in before.items():  # the handlers are given back
        assert signal.getsignal(sig) is handler, sig
    assert signal.set_wakeup_fd(-1) == -1


def test_a_signal_before_the_loop_reads_the_pipe_stops_the_daemon_after_its_start(
        tmp_path: Path, daemon_factory: Any) -> None:
    """SIGTERM raised in the main thread from a ready listener, before serve_forever() reads
    the pipe: its byte waits there, and the daemon stops right after starting."""
    config = fast_config(tmp_path)
    daemon, results = daemon_factory(config, start=False)

    class TermOnReady(Lifecycle):
        def on_ready(self) -> None:
            signal.raise_signal(signal.SIGTERM)

    daemon.add_lifecycle_listener(TermOnReady())
    served = threading.Event()
    lost: list[str] = []

    def last_resort() -> None:
        if not served.wait(30):
            lost.append("SIGTERM: no stop")
            daemon.request_stop()

    watchdog = threading.Thread(target=last_resort, name="last-resort")
    watchdog.start()
    try:
        daemon.serve_forever(lambda: config)
    finally:
        served.set()
        watchdog.join()
    assert lost == []
