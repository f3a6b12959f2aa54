"""One way to start, stop and wait for every long-running thread of rotwatchd.

Modelled on watchdog's ``utils.BaseThread``: a daemon thread whose loop waits on the thread's
own condition variable (never a sleep) and leaves when :attr:`StoppableThread.stopping`
becomes true. The owner calls ``start()``, later ``stop()`` (returns at once, idempotent, also
before ``start()``) and ``join(timeout)``, or both at once with :meth:`stop_and_join`.
"""

from __future__ import annotations

import threading


class StoppableThread(threading.Thread):
    """A daemon thread with a condition variable ``_cond`` guarding a stop flag.

    Subclasses implement ``run()`` as a loop that waits with ``self._cond.wait(timeout)`` (or
    ``wait_for``) while holding ``self._cond``, and returns once :attr:`stopping` is true. A
    loop that blocks elsewhere (a queue) overrides :meth:`on_stop` to wake it.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._cond = threading.Condition()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """Ask the loop to end (after what it is doing now); returns at once, idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.on_stop()

    def on_stop(self) -> None:
        """Called by :meth:`stop` after the flag is set: wake what the loop may wait on besides
        the condition. Nothing by default."""

    def stop_and_join(self, timeout: float | None = None) -> bool:
        """:meth:`stop`, then wait up to ``timeout`` seconds (None: as long as it takes) for a
        started thread to end. Returns True when the thread is not running."""
        self.stop()
        if self.ident is not None:
            self.join(timeout)
        return not self.is_alive()
