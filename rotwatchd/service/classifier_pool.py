"""Classifiers for concurrent workers: one instance per worker using it at the same moment.

A LiteRT interpreter must not run two ``invoke()`` at once (it raises "There is at least 1
reference to internal data"), so the workers lease an instance for each prediction instead of
sharing one. Instances are created on demand by ``factory`` and kept for reuse, so the pool
never holds more than the peak number of concurrent workers, or ``limit`` when given: then a
worker waits for an instance to come back rather than build another (the daemon shares one:
inference is ~10 % of a photo's time, a second set of interpreters ~60 MiB). The
SleepController can :meth:`release` them all while asleep and :meth:`reload` one on wake (its
``ReleasableModel`` interface).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model package (numpy, the runtime) is imported by ``factory`` only
    from rotwatchd.model.base import OrientationClassifier


class ClassifierPool:
    """Thread-safe pool of classifiers built by ``factory``. ``loads`` counts factory runs."""

    def __init__(self, factory: Callable[[], OrientationClassifier], *,
                 limit: int | None = None) -> None:
        self._factory = factory
        self._lock = threading.Condition()
        self._idle: list[OrientationClassifier] = []
        self._leased = 0
        self._alive = 0  # instances built (or being built) and not closed yet
        self._limit = limit
        self._generation = 0  # bumped by release(): leased instances from before get closed
        self.loads = 0

    @property
    def loaded(self) -> bool:
        """True while at least one classifier is in memory."""
        with self._lock:
            return bool(self._idle) or self._leased > 0

    def _create(self) -> OrientationClassifier:
        classifier = self._factory()
        with self._lock:
            self.loads += 1
        return classifier

    @contextlib.contextmanager
    def lease(self) -> Iterator[OrientationClassifier]:
        """Use a classifier no other thread uses meanwhile (waiting for one to come back when
        ``limit`` are in use). Raises what ``factory`` raises."""
        with self._lock:
            while (not self._idle and self._limit is not None
                   and self._alive >= self._limit):
                self._lock.wait()
            classifier = self._idle.pop() if self._idle else None
            if classifier is None:
                self._alive += 1  # this lease builds one
            generation = self._generation
            self._leased += 1
        try:
            if classifier is None:
                try:
                    classifier = self._create()
                except BaseException:
                    with self._lock:
                        self._alive -= 1
                        self._lock.notify()
                    raise
            yield classifier
        finally:
            with self._lock:
                self._leased -= 1
                keep = classifier is not None and generation == self._generation
                if keep and classifier is not None:
                    self._idle.append(classifier)
                elif classifier is not None:
                    self._alive -= 1
                self._lock.notify()
            if classifier is not None and not keep:
                classifier.close()

    def get(self) -> OrientationClassifier:
        """Make sure one classifier is loaded (e.g. to fail fast at start) and return it.

        The instance stays in the pool; use :meth:`lease` to predict with it.
        """
        with self.lease() as classifier:
            return classifier

    def reload(self) -> None:
        """Load one classifier now if none is loaded (after a wake-up)."""
        if not self.loaded:
            self.get()

    def release(self) -> None:
        """Close every idle classifier; leased ones are closed when given back."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._alive -= len(idle)
            self._generation += 1
            self._lock.notify_all()
        for classifier in idle:
            classifier.close()
