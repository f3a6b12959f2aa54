"""ModelSlot: the classifier behind a lock, so the SleepController can drop and rebuild it.

A loaded LiteRT interpreter holds its weights and tensor arena (tens of MB on a Pi). With
``power.release_model_when_idle`` the SleepController calls :meth:`ModelSlot.release` when it
goes to sleep and :meth:`ModelSlot.reload` when it wakes; workers always go through
:meth:`ModelSlot.get`, which also loads lazily, so a failed eager reload is retried with the file
that needs the model and reported there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rotwatchd.model.base import OrientationClassifier


class ModelSlot:
    """Holds at most one classifier built by *factory* (e.g. ``lambda: load_classifier(...)``).

    Thread-safe. ``loads`` counts how many times the factory ran (status JSON, tests).
    """

    def __init__(self, factory: Callable[[], OrientationClassifier]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._model: OrientationClassifier | None = None
        self.loads = 0

    @property
    def loaded(self) -> bool:
        """True while a classifier is in memory."""
        with self._lock:
            return self._model is not None

    def get(self) -> OrientationClassifier:
        """The classifier, loading it first if needed. Raises whatever the factory raises."""
        with self._lock:
            if self._model is None:
                self._model = self._factory()
                self.loads += 1
            return self._model

    def reload(self) -> None:
        """Load the classifier now if it is not loaded (no-op otherwise)."""
        self.get()

    def release(self) -> None:
        """Close and drop the classifier so its memory can be returned to the system.

        Callers guarantee no worker is inside ``predict`` (the SleepController only releases
        when no file is in progress).
        """
        with self._lock:
            model, self._model = self._model, None
        if model is not None:
            model.close()
