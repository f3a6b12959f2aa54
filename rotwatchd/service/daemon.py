"""The daemon: watchers -> settler -> bounded queue -> workers -> processor, plus status.

Lifecycle: ``Daemon(config)`` builds everything, :meth:`Daemon.start` starts the threads (the
startup rescan included) and returns once watches are set up; :meth:`Daemon.stop` lets each
worker finish its current file, stops everything and closes the journal;
:meth:`Daemon.reload` applies a new validated config without dropping queued files.
:meth:`Daemon.serve_forever` is what ``rotwatchd run`` calls: it blocks until
:meth:`request_stop` (signal-safe) or SIGTERM/SIGINT and performs :meth:`request_reload`
requests and SIGHUP reloads in the main thread.

Seams for power management and systemd: ``hooks`` (a SleepController: activity,
begin_work/end_work, inference_started), ``Daemon.queue`` (depth, ActivityListener for
"work arrived"/"idle"), ``Daemon.model`` (a ClassifierPool that can be released and reloaded),
lifecycle listeners (ready, reloading, reloaded, stopping) and ``set_power_status``.

``Daemon.review`` is the review queue; with ``web.listen`` set, :meth:`Daemon.start` also serves
the local web page that ``page`` builds (``rotwatchd run`` passes rotwatchd.web's
:func:`~rotwatchd.web.page.page_for`; this package never imports the web layer above it), fed by
timed result listeners and status listeners (every power-state change).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from rotwatchd import __version__
from rotwatchd.config import (
    Config,
    ConfigError,
    InboxConfig,
    ModelConfig,
    WebConfig,
    ensure_dirs,
)
from rotwatchd.formats.heap import bound_heap
from rotwatchd.model.base import OrientationClassifier
from rotwatchd.model.network import Runtime
from rotwatchd.model.registry import load_classifier
from rotwatchd.output.atomic import UnsafeFolder
from rotwatchd.output.lock import LockHeld, ProcessLock
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.journal import Journal
from rotwatchd.service.processor import Processor, Result, WorkHooks
from rotwatchd.service.recovery import clean_temporaries, complete_interrupted
from rotwatchd.service.retry import (
    MAX_ATTEMPTS,
    failed_folder,
    output_ready,
    retry_delay,
    room_needed,
)
from rotwatchd.service.review import ReviewQueue
from rotwatchd.service.status import StatusPublisher
from rotwatchd.watch.settle import Settler
from rotwatchd.watch.watcher import InboxWatcher, ObserverFactory, Rescanner
from rotwatchd.watch.workqueue import Heartbeat, Worker, WorkItem, WorkQueue

log = logging.getLogger(__name__)

ClassifierFactory = Callable[[ModelConfig], OrientationClassifier]


def load_configured_classifier(model: ModelConfig) -> OrientationClassifier:
    """The real model as configured (``model.backend``, ``model.path``, ``model.threads``,
    ``model.runtime``, ``model.providers``; ``model.min_confidence``: see
    :func:`rotwatchd.model.fusion.with_review_threshold`)."""
    from rotwatchd.model.fusion import with_review_threshold

    return with_review_threshold(load_classifier(model.backend, model.path, model.threads,
                                                 Runtime(model.runtime, model.providers)),
                                 model.min_confidence)


class Lifecycle:
    """Subclass and :meth:`Daemon.add_lifecycle_listener` to follow the daemon (sd_notify)."""

    def on_ready(self) -> None:
        """Watches are set up and workers run."""

    def on_reloading(self) -> None:
        """A reload starts."""

    def on_reloaded(self, error: str | None) -> None:
        """A reload ended; ``error`` is None on success, else why the old config stays."""

    def on_stopping(self) -> None:
        """Shutdown starts."""


class Page(Protocol):
    """The local web page as the daemon drives it (rotwatchd.web.page.WebPage)."""

    @property
    def url(self) -> str | None:
        """Where it listens, None while it does not."""

    def start(self, web: WebConfig) -> None:
        """Serve on ``web.listen``; one log line and no page when it cannot listen."""

    def reconfigure(self, config: Config) -> None:
        """Follow a reloaded config (listen address, token, limits)."""

    def stop(self) -> None:
        """Stop serving; idempotent."""


#: Builds the page of a daemon, or returns None (after one log line) when it cannot run.
PageFactory = Callable[["Daemon"], Page | None]


#: In ``state_dir``: held (flock) by the daemon using that state, from construction to stop.
LOCK_NAME = "daemon.lock"


class AlreadyRunning(RuntimeError):
    """Another daemon uses the same ``state_dir`` (its journal, review queue and status)."""


class Daemon:
    """Owns every thread of a running rotwatchd. Not restartable: start() once, stop() once."""

    def __init__(self, config: Config, *,
                 classifier_factory: ClassifierFactory = load_configured_classifier,
                 hooks: WorkHooks | None = None,
                 observer_factory: ObserverFactory | None = None,
                 page: PageFactory | None = None) -> None:
        ensure_dirs(config)
        self._instance = ProcessLock(config.state_dir / LOCK_NAME)
        try:
            self._instance.acquire()
        except LockHeld as exc:
            raise AlreadyRunning(
                f"another rotwatchd (pid {exc.pid}) runs with state in {config.state_dir}; "
                "stop it first, or give this one its own state_dir") from None
        self.config = config
        self.started_at = time.time()
        self.journal = Journal(config.state_dir)
        self.review = ReviewQueue(config, self.journal)
        self.queue = WorkQueue(config.queue_size)
        #: what builds each classifier; adaptation (rotwatchd.adapt.runtime) wraps it before
        #: start() to put a personal head in
        self.classifier_factory = classifier_factory
        # one classifier, leased by one worker at a time (interpreters are not thread-safe):
        # a second one would cost ~60 MiB for ~10 % of a photo's time
        self.model = ClassifierPool(lambda: self.classifier_factory(self.config.model), limit=1)
        self.processor = Processor(config, self.journal, self.model, hooks=hooks,
                                   retries=_SettlerRetries(self), on_result=self._on_result)
        self.settler = Settler(self.queue, config.watch.quiet_period, on_activity=self._activity)
        self._failures: dict[Path, int] = {}  # failed attempts per file, until one succeeds
        self._failures_lock = threading.Lock()
        self.status = StatusPublisher(config.state_dir, self.snapshot)
        self.watchers: list[InboxWatcher] = []
        self.workers: list[Worker] = []
        self._rescanner: Rescanner | None = None
        self._observer_factory = observer_factory
        self._lifecycle: list[Lifecycle] = []
        self._result_listeners: list[Callable[[Result], None]] = []
        self._timed_listeners: list[Callable[[Result, float | None], None]] = []
        self._status_listeners: list[Callable[[], None]] = []
        self._began = threading.local()  # when this worker thread took its current file
        self.web: Page | None = None
        self._page_factory = page
        self._power_status: Callable[[], dict[str, Any]] | None = None
        self._status_sections: dict[str, Callable[[], dict[str, Any]]] = {}
        self._heartbeat: Heartbeat | None = None
        self._state = "created"
        self._lock = threading.Lock()  # serialises start/stop/reload
        self._stop_requested = False
        self._reload_requests: list[Callable[[], Config]] = []
        self._wake_r, self._wake_w = os.pipe()

    # --- seams ---------------------------------------------------------------------------
    @property
    def hooks(self) -> WorkHooks:
        return self.processor.hooks

    def set_hooks(self, hooks: WorkHooks) -> None:
        """Install power hooks (e.g. a SleepController) before :meth:`start`."""
        self.processor.hooks = hooks

    def set_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Worker loops started from now on beat ``heartbeat`` (systemd watchdog)."""
        self._heartbeat = heartbeat

    def add_lifecycle_listener(self, listener: Lifecycle) -> None:
        self._lifecycle.append(listener)

    def add_result_listener(self, callback: Callable[[Result], None]) -> None:
        """``callback(result)`` after each file, from the worker thread."""
        self._result_listeners.append(callback)

    def add_timed_result_listener(self, callback: Callable[[Result, float | None], None]) -> None:
        """``callback(result, seconds)`` after each file, from the worker thread; ``seconds``
        from the worker taking the file to its result (waking from sleep included)."""
        self._timed_listeners.append(callback)

    def add_status_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` at each :meth:`mark_status_dirty` (every power-state change)."""
        self._status_listeners.append(callback)

    def set_power_status(self, provider: Callable[[], dict[str, Any]]) -> None:
        """``provider()`` fills the ``power`` field of status.json; call mark_status_dirty()
        when it changes."""
        self._power_status = provider
        self.mark_status_dirty()

    def add_status_section(self, name: str, provider: Callable[[], dict[str, Any]]) -> None:
        """``provider()`` fills the ``name`` field of status.json (e.g. ``adapt``); a failing
        provider gives ``{"error": ...}`` there, never a failed status."""
        self._status_sections[name] = provider
        self.status.mark_dirty()

    def mark_status_dirty(self) -> None:
        self.status.mark_dirty()
        for callback in list(self._status_listeners):
            callback()

    def _retry_later(self, path: Path, inbox: InboxConfig, delay: float) -> None:
        """A file that looked unfinished: look again when it changes, or after ``delay``."""
        self.settler.hold(path, inbox, delay, "incomplete")

    def _retry_failed(self, path: Path, inbox: InboxConfig, exc: OSError) -> bool:
        """Writing failed (disk full, read-only output): try again with back-off, as soon as
        the folder it went to can take the file again; a folder refused as unsafe (a symlink
        out), as soon as it is no longer a link. Returns whether the file will be tried
        again (not after MAX_ATTEMPTS failures with the folder looking fine)."""
        with self._failures_lock:
            attempt = self._failures[path] = self._failures.get(path, 0) + 1
            if attempt > MAX_ATTEMPTS:
                del self._failures[path]
        if attempt > MAX_ATTEMPTS:
            log.warning("%s failed %d times although its output folder looked writable; "
                        "leaving it to the next rescan", path, MAX_ATTEMPTS)
            return False
        if isinstance(exc, UnsafeFolder):
            link = exc.where
            self.settler.hold(path, inbox, retry_delay(attempt), "refused",
                              ready=lambda: not os.path.islink(link))
            self.status.mark_dirty()
            return True
        folder = failed_folder(exc, inbox.output)
        try:
            need = room_needed(os.lstat(path).st_size)
        except OSError:
            need = room_needed(0)
        self.settler.hold(path, inbox, retry_delay(attempt), "retry",
                          ready=lambda: output_ready(folder, need))
        self.status.mark_dirty()
        return True

    def _activity(self, event_time: float) -> None:
        self.processor.hooks.activity(event_time)

    def _handle(self, item: WorkItem) -> None:
        self._began.at = time.monotonic()
        try:
            self.processor.handle(item)
        finally:
            self._began.at = None

    def _on_result(self, result: Result) -> None:
        if result.outcome != "error":
            with self._failures_lock:
                self._failures.pop(result.path, None)
        began = getattr(self._began, "at", None)
        seconds = time.monotonic() - began if began is not None else None
        for callback in list(self._result_listeners):
            callback(result)
        for timed in list(self._timed_listeners):
            timed(result, seconds)
        self.status.mark_dirty()

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, *, load_model: bool = True) -> None:
        """Load the model (fail fast: raises ModelError), start workers, watchers, rescans."""
        with self._lock:
            if self._state != "created":
                raise RuntimeError(f"cannot start a daemon that is {self._state}")
            bound_heap()  # freed image memory goes back to the system: a flat RSS
            if load_model:
                self.model.get()
            clean_temporaries(self.config)
            complete_interrupted(self.config, self.journal)
            interrupted = self.journal.interrupted()
            if interrupted:
                log.info("%d file(s) were in progress when the last run stopped; redoing them",
                         len(interrupted))
            self.settler.start()
            self.status.start()
            self._start_workers()
            self._start_watching()
            self._start_web()
            self._state = "running"
        self.status.mark_dirty()
        log.info("rotwatchd %s running: %d inbox(es), %d worker(s), state in %s", __version__,
                 len(self.watchers), len(self.workers), self.config.state_dir)
        for listener in self._lifecycle:
            listener.on_ready()

    def _start_workers(self) -> None:
        self.queue.reopen()
        for i in range(self.config.workers):
            worker = Worker(self.queue, self._handle, f"rotwatchd-worker-{i}",
                            heartbeat=self._heartbeat)
            worker.start()
            self.workers.append(worker)

    def _stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.join()
        self.workers = []

    def _start_watching(self) -> None:
        cfg = self.config
        known = self._in_hand_or_known_unchanged
        for inbox in cfg.inboxes:
            watcher = InboxWatcher(inbox, self.settler, cfg.watch.ignore_patterns, known=known,
                                   observer_factory=self._observer_factory,
                                   on_change=self.status.mark_dirty,
                                   poll_interval=cfg.watch.poll_interval)
            watcher.start()
            self.watchers.append(watcher)
        self._rescanner = Rescanner(self.watchers, cfg.watch.rescan_interval)
        self._rescanner.start()

    def _stop_watching(self) -> None:
        if self._rescanner is not None:
            self._rescanner.stop()
            self._rescanner.join()
            self._rescanner = None
        for watcher in self.watchers:
            watcher.stop()
        self.watchers = []

    def _start_web(self) -> None:
        """Serve the page when ``web.listen`` is set (history and metrics follow from the
        first time on). When it cannot be built: one log line, the daemon runs on."""
        if self.config.web.listen is None:
            return
        if self.web is None:
            if self._page_factory is None:
                log.error("web page off: this daemon was built without one (web.listen: %s)",
                          self.config.web.listen)
                return
            self.web = self._page_factory(self)
            if self.web is None:
                return
        self.web.start(self.config.web)

    def _stop_web(self) -> None:
        if self.web is not None:
            self.web.stop()

    @property
    def rescans(self) -> int:
        """Full rescans completed since the watchers (re)started."""
        return self._rescanner.passes if self._rescanner is not None else 0

    def _in_hand_or_known_unchanged(self, path: Path, st: os.stat_result) -> bool:
        """What a scan may skip: a file queued or being processed, or one whose final
        journal row has this stat. The queue is asked first: a run records its row before
        it leaves the queue, so a file is never between the two unseen."""
        if self.queue.holds(path):
            return True
        return self.journal.is_known_unchanged(str(path), st.st_size, st.st_mtime_ns,
                                               st.st_ctime_ns, st.st_ino)

    def stop(self) -> None:
        """Finish the files in progress, stop every thread, publish a final status, close."""
        with self._lock:
            if self._state in ("stopped", "created"):
                self._close_quietly()
                return
            self._state = "stopping"
        for listener in self._lifecycle:
            listener.on_stopping()
        log.info("stopping: finishing the file(s) in progress")
        self._stop_web()  # no more answers from the page while the workers wind down
        self._stop_watching()
        self.settler.stop()
        self.settler.join()
        self.queue.close()
        self._stop_workers()
        self.model.release()
        with self._lock:
            self._state = "stopped"
        self.status.stop()
        self.status.join()
        self._close_quietly()
        log.info("stopped")

    def _close_quietly(self) -> None:
        """Close the journal and the wake pipe, once (a second call must not close fds that
        meanwhile belong to someone else)."""
        self._state = "stopped"
        if self._wake_r < 0:
            return
        self.journal.close()
        self._instance.release()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def reload(self, new: Config) -> None:
        """Apply ``new`` (already validated): workers finish their current file, queued and
        settling files are kept, watchers restart with a rescan. Raises ConfigError (and keeps
        the old config) for changes that need a restart."""
        if new.state_dir.resolve() != self.config.state_dir.resolve():
            raise ConfigError([f"{new.source}: state_dir: cannot change while running; restart"])
        for listener in self._lifecycle:
            listener.on_reloading()
        with self._lock:
            old = self.config
            self._stop_watching()
            self._stop_workers()
            ensure_dirs(new)
            self.config = new
            self.processor.config = new
            self.review.reconfigure(new)
            self.settler.quiet_period = new.watch.quiet_period
            self.queue.set_maxsize(new.queue_size)
            if new.model != old.model:
                self.model.release()  # no worker runs now; the next file loads the new model
            kept = {inbox.path for inbox in new.inboxes}
            for inbox in old.inboxes:
                if inbox.path not in kept:
                    self.settler.forget_under(inbox.path)
            self._start_workers()
            self._start_watching()
            if self.web is not None:
                self.web.reconfigure(new)
            else:
                self._start_web()
        self.status.mark_dirty()
        log.info("configuration reloaded from %s", new.source)
        for listener in self._lifecycle:
            listener.on_reloaded(None)

    # --- foreground service --------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop. Safe to call from a signal handler."""
        self._stop_requested = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"s")

    def request_reload(self, load: Callable[[], Config]) -> None:
        """Ask :meth:`serve_forever` to run ``load()`` and :meth:`reload` with its result.
        Signal-safe. A ConfigError from ``load`` is logged and the old config stays."""
        self._reload_requests.append(load)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"r")

    def serve_forever(self, reload_config: Callable[[], Config] | None = None) -> None:
        """Start, then block (no polling) until request_stop(); always stops on the way out.

        With ``reload_config`` (``rotwatchd run``; the main thread only, else ValueError as
        from :func:`signal.signal`), SIGTERM and SIGINT stop and SIGHUP reloads from
        ``reload_config()``, whichever thread the kernel hands the signal to; the previous
        handlers come back on the way out.
        """
        with self._signals_on_the_wake_pipe(reload_config is not None) as signals:
            try:
                self.start()
                while not self._stop_requested:
                    for number in os.read(self._wake_r, 64):  # wakes only when a byte arrives
                        if number not in signals:
                            continue  # b"s" or b"r": request_stop() or request_reload()
                        if number == signal.SIGHUP and reload_config is not None:
                            self._reload_requests.append(reload_config)
                        else:
                            self._stop_requested = True
                    while self._reload_requests and not self._stop_requested:
                        self._reload_from(self._reload_requests.pop(0))
            finally:
                if signals:
                    signal.set_wakeup_fd(-1)  # stop() closes the pipe; its fd may be reused
                self.stop()

    @contextlib.contextmanager
    def _signals_on_the_wake_pipe(self, take: bool) -> Iterator[frozenset[int]]:
        """With ``take``: SIGTERM, SIGINT and SIGHUP each write their number to the wake pipe
        (:func:`signal.set_wakeup_fd`, done by CPython's C-level handler in whichever thread
        the kernel picked) and their Python-level handlers do nothing. A Python handler runs
        only when the main thread next executes bytecode, which it does not while it sleeps
        in the pipe's read(2) and the signal went to another thread: a handler writing to
        the pipe itself would then never run (a lost SIGTERM or SIGHUP). Yields the signal
        numbers taken (none without ``take``); restores the handlers on exit."""
        if not take:
            yield frozenset()
            return
        taken = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        os.set_blocking(self._wake_w, False)  # set_wakeup_fd needs it; a full pipe drops bytes
        before = {sig: signal.signal(sig, _noted_on_the_wake_pipe) for sig in taken}
        previous_fd = signal.set_wakeup_fd(self._wake_w)
        try:
            yield frozenset(int(sig) for sig in taken)
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in before.items():
                if handler is not None:  # None: one not set from Python, which stays ours
                    signal.signal(sig, handler)

    def _reload_from(self, load: Callable[[], Config]) -> None:
        try:
            self.reload(load())
        except ConfigError as exc:
            for line in exc.problems:
                log.error("reload rejected, keeping the old configuration: %s", line)
            for listener in self._lifecycle:
                listener.on_reloaded(str(exc))

    # --- status --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The status.json document (see ``rotwatchd status``)."""
        power = self._power()
        problems = [{"path": r.path, "outcome": r.outcome, "detail": r.detail,
                     "time": r.finished_at} for r in self.journal.recent_problems(10)]
        return {
            "pid": os.getpid(),
            "version": __version__,
            "state": self._state,
            "started_at": self.started_at,
            "config": self.config.source,
            "inboxes": [w.describe() for w in self.watchers],
            "queue": {"depth": self.queue.depth, "running": self.queue.running,
                      "pending": self.settler.pending(), "capacity": self.config.queue_size},
            "waiting": {why: {"count": len(paths), "paths": [str(p) for p in paths[:10]]}
                        for why, paths in sorted(self.settler.held().items())},
            "workers": len(self.workers),
            "counts": self.journal.counts(),
            "last_errors": problems,
            "power": power,
            **{name: _section(provider) for name, provider in self._status_sections.items()},
        }

    def _power(self) -> dict[str, Any]:
        if self._power_status is None:
            return {"state": "unmanaged"}
        try:
            return self._power_status()
        except Exception as exc:  # status must never take the daemon down
            return {"state": "unknown", "error": str(exc)}

    def power_state(self) -> str:
        """``awake``, ``waking``, ``asleep``; ``unmanaged`` without power management."""
        return str(self._power().get("state", "unknown"))


def _noted_on_the_wake_pipe(signum: int, frame: FrameType | None) -> None:
    """Python-level handler of the signals :meth:`Daemon.serve_forever` takes: nothing left to
    do, CPython's C-level handler already wrote the signal's number to the wake pipe."""


def _section(provider: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return provider()
    except Exception as exc:  # status must never take the daemon down
        return {"error": str(exc)}


class _SettlerRetries:
    """The processor's :class:`~rotwatchd.service.processor.Retries`: the daemon's settler
    holds the file and looks again (see Daemon._retry_later and Daemon._retry_failed)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def later(self, path: Path, inbox: InboxConfig, delay: float) -> None:
        self._daemon._retry_later(path, inbox, delay)

    def failed(self, path: Path, inbox: InboxConfig, exc: OSError) -> bool:
        return self._daemon._retry_failed(path, inbox, exc)
