"""Every long-running thread follows one contract (rotwatchd.threads.StoppableThread): start,
stop() that returns at once and wakes any wait, join with a timeout."""

from __future__ import annotations

import ast
import threading

from helpers.paths import REPO_ROOT

from rotwatchd.threads.stoppable import StoppableThread

ROOT = REPO_ROOT / "rotwatchd"


class _Waiter(StoppableThread):
    """Waits on its condition without a timeout, as the daemon's loops do when idle."""

    def __init__(self) -> None:
        super().__init__("test-waiter")
        self.turns = 0

    def run(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.stopping)  # no timeout: only stop() ends it
            self.turns += 1


def test_stop_wakes_a_loop_waiting_without_timeout_and_join_returns() -> None:
    waiter = _Waiter()
    waiter.start()
    assert waiter.daemon
    assert waiter.stop_and_join(timeout=10)
    assert waiter.turns == 1 and not waiter.is_alive()


def test_stop_before_start_and_twice_is_safe() -> None:
    waiter = _Waiter()
    waiter.stop()
    assert waiter.stop_and_join(timeout=1) and waiter.stopping
    waiter.stop()


def test_no_thread_is_started_outside_the_contract() -> None:
    """No ``threading.Thread(...)`` nor a direct subclass of it in the package but the base."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path == ROOT / "threads" / "stoppable.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            bases = node.bases if isinstance(node, ast.ClassDef) else []
            calls = [node.func] if isinstance(node, ast.Call) else []
            for expr in [*bases, *calls]:
                if ast.unparse(expr) in ("threading.Thread", "Thread"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
    assert threading.Thread in StoppableThread.__mro__
