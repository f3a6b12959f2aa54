"""Fixtures for every test: the leaked-thread guard, the marker classifier and started daemons.

The helpers they use (and that tests import) are in ``tests/helpers/``. The tests are laid out
like the code: ``unit/`` (functions and classes on real files, no daemon), ``daemon/`` (a
daemon started in-process) and ``e2e/`` (real processes: the CLI, a service, a browser, systemd,
a Ray cluster).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import MarkerClassifier, Results

from rotwatchd.config import Config, ModelConfig
from rotwatchd.formats.sniff import register_heif

# rotwatchd registers pillow-heif's opener when the first HEIF arrives; tests also make and
# read HEIF files with Pillow directly
register_heif()

# --- leaked threads ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (daemons must stop() and join everything)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    leaked: list[threading.Thread] = []
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            return
        leaked[0].join(0.1)
    pytest.fail(f"leaked threads: {[t.name for t in leaked]}")


@pytest.fixture
def classifier() -> MarkerClassifier:
    return MarkerClassifier()


def _page_for(daemon: Any) -> Any:
    from rotwatchd.web.page import page_for

    return page_for(daemon)


@pytest.fixture
def daemon_factory(classifier: MarkerClassifier) -> Iterator[Callable[..., Any]]:
    """``daemon_factory(config, **kwargs) -> (daemon, results)``; started; stopped at teardown."""
    from rotwatchd.service.daemon import Daemon

    made: list[Daemon] = []

    def factory(config: Config, start: bool = True, **kwargs: Any) -> tuple[Daemon, Results]:
        def build(model: ModelConfig) -> MarkerClassifier:
            return classifier

        kwargs.setdefault("classifier_factory", build)
        kwargs.setdefault("page", _page_for)  # as ``rotwatchd run`` builds its daemon
        daemon = Daemon(config, **kwargs)
        results = Results()
        daemon.add_result_listener(results)
        made.append(daemon)
        if start:
            daemon.start()
        return daemon, results

    yield factory
    for daemon in made:
        daemon.stop()
