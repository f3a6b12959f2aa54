"""On-device adaptation in the running daemon: collect labels and fit while asleep.

* **What is collected.** The journal's files decided exactly: by a valid EXIF orientation
  (source ``exif``) or by a person in the review queue (``human``). For each, the upright
  output the daemon wrote is read once (at the model's input size) and the label store
  (``rotwatchd/adapt/labels.py``) keeps its features; the photo itself is never copied. EXIF-decided
  photos skip the model when they are processed, so this costs 8 network passes (~0.1 s) a
  photo, paid only here: while the daemon is asleep, one photo at a time, stopping at once
  when a file arrives (the cursor remembers where it was). Only an output as the daemon
  wrote it is read: inside a configured inbox or output folder (links resolved), not itself
  a symbolic link, not changed since it was written (an edited picture may no longer stand
  the way its label says); any other is passed over.
* **After a model upgrade.** Labels whose features an earlier scene network computed are of no
  use to the new one: status counts them apart, the fit leaves them out, and collecting
  computes them again with the current network from the same upright output, when the journal
  still names it, it lies inside a configured inbox or output folder and it has not changed
  since it was written; a label whose photo is gone stays as it was and is tried only once.
* **When** (:func:`next_step`, pure): only while the SleepController has the daemon asleep and
  for at least ``adapt.after_idle``; first collect what is pending, then, with at least
  ``adapt.min_labels`` labels added since the last fit, fit (``rotwatchd/adapt/fit.py``; asked to
  stop between iterations when a file arrives). Nothing runs while files are waiting. With
  nothing due, it looks again every ``adapt.after_idle`` (at least :data:`RECHECK_MIN` s)
  while the daemon stays asleep: review answers given meanwhile (``rotwatchd review apply``
  or the web page) wake nothing else, and are collected then; one journal query each time.
* **Using it.** A head the guardrail accepts is written to ``<state_dir>/adapt/`` and the
  classifiers are reloaded: the default backend then runs it (``personal_factory``); a rejected
  one is only recorded (``last-fit.json``) and the log says why. A head file saved without a
  support (before the support gate) is never used: it reads as no personal head, and every
  stored label counts as new, so the next idle spell refits a gated head.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rotwatchd.adapt.fit import Adapted, FitSettings, adapt
from rotwatchd.adapt.labels import LabelStore
from rotwatchd.config import AdaptConfig, Config, ModelConfig
from rotwatchd.formats.image import DEFAULT_MAX_PIXELS, load_upright
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat
from rotwatchd.model.base import ModelError, OrientationClassifier
from rotwatchd.output.atomic import UnsafeFolder, atomic_write_bytes
from rotwatchd.output.inboxfile import Replaced, open_inbox_file
from rotwatchd.power.sleep import PowerState, SleepController
from rotwatchd.service.daemon import Lifecycle
from rotwatchd.service.journal import Journal
from rotwatchd.service.processor import MODEL_INPUT_SIDE
from rotwatchd.threads.stoppable import StoppableThread

if TYPE_CHECKING:
    from PIL import Image

    from rotwatchd.model.personal import PersonalHead
    from rotwatchd.service.daemon import Daemon

log = logging.getLogger(__name__)

ADAPT_DIR = "adapt"
HEAD_NAME = "personal-head.npz"
LAST_FIT = "last-fit.json"
ClassifierFactory = Callable[[ModelConfig], OrientationClassifier]


class Cues(Protocol):
    """``rotwatchd.model.personal.LabelCues`` fits."""

    def __call__(self, image: Any) -> tuple[Any, Any]: ...

    def close(self) -> None: ...


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino


def adapt_dir(state_dir: Path) -> Path:
    return state_dir / ADAPT_DIR


def label_folders(config: Config) -> tuple[Path, ...]:
    """The folders whose files adaptation may read again: every inbox and its output."""
    return tuple(folder for inbox in config.inboxes for folder in (inbox.path, inbox.output))


#: Shortest wait between two looks for new labels while asleep with nothing due (seconds):
#: ``adapt.after_idle`` may be 0.
RECHECK_MIN = 60.0


def next_step(now: float, asleep_since: float | None, settings: AdaptConfig, pending: int,
              new_labels: int) -> tuple[str | None, float | None]:
    """What adaptation does now: ``("collect" | "fit" | None, wait)``; ``wait`` is how many
    seconds until something may be due, or None for "until the power state changes" (awake,
    or adaptation off). Asleep with nothing due, ``wait`` is ``max(after_idle, RECHECK_MIN)``:
    labels may arrive without waking the daemon (a review answer given from the CLI)."""
    if not settings.enabled or asleep_since is None:
        return None, None
    due = asleep_since + settings.after_idle
    if now < due:
        return None, due - now
    if pending:
        return "collect", 0.0
    if new_labels >= settings.min_labels:
        return "fit", 0.0
    return None, max(settings.after_idle, RECHECK_MIN)


class Adapter:
    """Collects labels and fits the personal head for one ``state_dir`` (no thread here:
    :class:`AdaptWorker` or ``rotwatchd adapt`` call it). ``folders`` (``label_folders``):
    where the photos of labels an earlier scene network computed may be read again; with none,
    such labels are never re-collected."""

    def __init__(self, state_dir: Path, journal: Journal, settings: AdaptConfig,
                 model: ModelConfig, *, cues: Callable[[], Cues] | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, folders: Sequence[Path] = ()) -> None:
        self.folder = adapt_dir(state_dir)
        self.journal = journal
        self.settings = settings
        self.model = model
        self.folders = tuple(folders)
        self.store = LabelStore(self.folder, settings.max_labels)
        self._cues_factory = cues or self._default_cues
        self._max_pixels = max_pixels
        # the labels when the store closed: this network's, and how many of earlier ones
        self._closed_counts: tuple[dict[str, int], int] | None = None
        self._digest: tuple[Path | None, str | None] | None = None
        self._refit_unusable_head()

    def _refit_unusable_head(self) -> None:
        """A head file that cannot be used (saved without a support, or unreadable) is
        replaced at the next fit: every stored label counts as new."""
        from rotwatchd.model.personal import read_personal

        if (self.folder / HEAD_NAME).is_file() and read_personal(self.folder / HEAD_NAME) is None:
            log.warning("adapt: the personal head on disk has no support gate (or is "
                        "unreadable): not used; refitted at the next idle spell")
            self.store.put("added_at_fit", 0.0)

    def _default_cues(self) -> Cues:
        from rotwatchd.model.personal import LabelCues

        return LabelCues(self.model.path, 1)

    def close(self) -> None:
        """Close the label store; :meth:`status` then reports the labels it last held (the
        daemon publishes a final status after its listeners stopped)."""
        if self._closed_counts is None:
            with contextlib.suppress(sqlite3.Error):
                self._closed_counts = self._label_counts()
        self.store.close()

    def _label_counts(self) -> tuple[dict[str, int], int]:
        """Labels per source that the configured scene network can use, and how many more
        an earlier network computed."""
        digest = self.model_digest()
        if digest is None:
            return self.store.counts(), 0
        return self.store.counts(digest), self.store.stale_count(digest)

    def model_digest(self) -> str | None:
        """SHA-256 of the configured scene model (computed once per path), None when it
        cannot be read."""
        from rotwatchd.model.personal import model_digest

        if self._digest is None or self._digest[0] != self.model.path:
            try:
                digest: str | None = model_digest(self.model.path)
            except OSError:
                digest = None
            self._digest = (self.model.path, digest)
        return self._digest[1]

    # -- collecting ------------------------------------------------------------------------
    def pending(self, limit: int = 1000) -> int:
        """Exactly labelled files not collected yet, then labels of an earlier scene network
        not yet tried again with this one (counted up to ``limit``)."""
        found = len(self.journal.labelled_after(self.store.get("cursor"), limit))
        digest = self.model_digest()
        if found < limit and self.folders and digest is not None:
            found += len(self.store.stale(digest, limit - found))
        return found

    def fingerprint(self) -> tuple[object, ...]:
        """What the ``adapt`` status changes with: the labels stored (count, how many were ever
        added) and the head and last-fit files (stamps), which ``rotwatchd adapt`` and its
        ``--forget`` change from another process."""
        return (self.store.count(), self.store.get("added"), _stamp(self.folder / HEAD_NAME),
                _stamp(self.folder / LAST_FIT))

    def new_labels(self) -> int:
        """Labels added since the last fit."""
        return int(self.store.get("added") - self.store.get("added_at_fit"))

    def collect(self, limit: int = 100, cancelled: Callable[[], bool] = lambda: False) -> int:
        """Store the features of up to ``limit`` pending files, then re-collect labels of an
        earlier scene network with this one (:meth:`pending`); returns how many were added.
        Stops before the next photo once ``cancelled()``."""
        records = self.journal.labelled_after(self.store.get("cursor"), limit)
        digest = self.model_digest()
        added = 0
        cues: Cues | None = None

        def learn(image: Image.Image, sha256: str, source: str, now: float | None) -> None:
            nonlocal added, cues
            cues = cues or self._cues_factory()
            features, text = cues(image)
            self.store.add(sha256, source, features, text, now=now, model=digest)
            self.store.put("added", self.store.get("added") + 1)
            added += 1

        try:
            for record in records:
                if cancelled():
                    return added
                image = (None if self.store.has(record.sha256) else
                         self._read_output(record.output, record.finished_at, "not collected"))
                if image is not None:
                    learn(image, record.sha256, record.source or "exif", None)
                self.store.put("cursor", record.finished_at or 0.0)
            if not self.folders or digest is None or len(records) >= limit:
                return added
            for sha256, source, added_at in self.store.stale(digest, limit - len(records)):
                if cancelled():
                    return added
                again = self._read_again(sha256)
                if again is None:
                    self.store.mark_tried(sha256, digest)
                else:  # re-collecting keeps the label's age
                    learn(again, sha256, source, added_at)
        finally:
            if cues is not None:
                cues.close()
        return added

    def _read_again(self, sha256: str) -> Image.Image | None:
        """The upright output of this labelled content (:meth:`_read_output`), or None: the
        journal names none, or it cannot be read safely."""
        record = self.journal.labelled_output(sha256)
        if record is None or record.finished_at is None:
            return None
        return self._read_output(record.output, record.finished_at, "not read again")

    def _read_output(self, output: str | None, written_at: float | None,
                     refused: str) -> Image.Image | None:
        """The daemon's upright output ``output`` read at the model's input size, or None
        (logged at debug level as ``refused``): none was written, it lies outside ``folders``
        (with none given, only the file itself is checked), it or a folder on its way below
        the configured one is a symbolic link, it changed after ``written_at`` (someone edited
        or replaced it, even with the old mtime put back: its mtime or ctime is later; it may
        no longer stand the way its label says), or it cannot be read. The checks and the
        decoding use one descriptor opened without following links
        (``rotwatchd/output/inboxfile.py``), so a name swapped in between is never read."""
        if output is None:
            return None
        path = Path(os.path.abspath(output))
        roots = ([Path(os.path.abspath(f)) for f in self.folders] if self.folders
                 else [path.parent])
        root = next((r for r in roots if path.is_relative_to(r) and path != r), None)
        if root is None:
            log.debug("adapt: %s %s: outside the configured folders", path, refused)
            return None
        try:
            with open_inbox_file(path, root) as handle:
                # the writer carries the original's mtime over, and mv, cp -p or a restore
                # from a backup put an old one on another picture: only the ctime, which no
                # one can set back, tells that the file changed or was replaced after it was
                # written
                st = handle.st
                if written_at is not None and max(st.st_mtime, st.st_ctime) > written_at:
                    log.debug("adapt: %s %s: changed since it was written", path, refused)
                    return None
                return load_upright(handle.reader, MODEL_INPUT_SIDE,
                                    max_pixels=self._max_pixels)
        except (Replaced, UnsafeFolder) as exc:
            log.debug("adapt: %s %s: a symbolic link on its way (%s)", path, refused, exc)
            return None
        except (ImageProblem, UnsupportedFormat, OSError, RuntimeError) as exc:
            log.debug("adapt: %s %s: %s", path, refused, exc)
            return None

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, cancelled: Callable[[], bool] | None = None) -> Adapted:
        """Fit on every stored label, judge it, and put it in use if the guardrail accepts.
        Raises ModelError when the scene model has no head file or features output."""
        from rotwatchd.model.personal import (
            PersonalHead,
            model_digest,
            model_path_or_default,
            personal_bytes,
            shipped_head,
        )
        from rotwatchd.model.sidecar import ModelMeta

        meta = ModelMeta.for_model(model_path_or_default(self.model.path))
        shipped = shipped_head(self.model.path, meta.temperature)
        settings = FitSettings(strength=self.settings.strength, folds=self.settings.folds)
        labels = self.store.load(self.model_digest())  # not those of an earlier network
        added = self.store.get("added")
        result = adapt(labels, shipped, meta, settings, cancelled)
        if result.verdict.reason.startswith("interrupted"):
            log.info("adapt: fit interrupted by new files; tried again at the next idle spell")
            return result
        self.store.put("added_at_fit", added)
        figures = {**result.verdict.figures(), "fitted_at": time.time(),
                   "labels": self._label_counts()[0], "fit_cpu_s": round(result.seconds, 2)}
        if result.verdict.accepted and result.head is not None and result.support is not None:
            personal = PersonalHead(result.head, result.threshold, meta.threshold("cascade"),
                                    model_digest(self.model.path), result.support, figures)
            atomic_write_bytes(self.folder / HEAD_NAME, personal_bytes(personal))
            log.info("adapt: personal head %s", result.verdict.reason)
        else:
            log.warning("adapt: personal head %s", result.verdict.reason)
        atomic_write_bytes(self.folder / LAST_FIT, json.dumps(figures, indent=1).encode())
        return result

    def forget(self) -> int:
        """Delete every label and the personal head; returns how many labels were deleted."""
        deleted = self.store.forget()
        for name in (HEAD_NAME, LAST_FIT):
            (self.folder / name).unlink(missing_ok=True)
        return deleted

    def status(self) -> dict[str, Any]:
        """The ``adapt`` object of status.json (plain JSON types)."""
        counts, earlier = (self._closed_counts if self._closed_counts is not None
                           else self._label_counts())
        return adapt_status(self.folder.parent, self.settings.enabled, counts,
                            self.model_digest(), earlier_labels=earlier, model=self.model)


def unused_with(model: ModelConfig) -> str | None:
    """Why :func:`personal_factory` never runs a personal head with ``model``'s settings
    (another backend than the default; a runtime other than LiteRT, whose scene model has
    no features output), or None when it may."""
    from rotwatchd.model.network import LITERT
    from rotwatchd.model.registry import resolve

    if resolve(model.backend) != "litert-adaptive":
        return f"model.backend {model.backend}: only the default backend uses it"
    if model.runtime != LITERT.name:
        return (f"model.runtime {model.runtime}: it needs the LiteRT scene network's "
                "features output")
    return None


def sidecar_mismatch(personal: PersonalHead, model: ModelConfig) -> str | None:
    """:func:`~rotwatchd.model.personal.calibration_mismatch` against ``model``'s sidecar
    (None when the sidecar cannot be read: the daemon then fails to load the model anyway)."""
    from rotwatchd.model.personal import calibration_mismatch, model_path_or_default
    from rotwatchd.model.sidecar import ModelMeta

    try:
        meta = ModelMeta.for_model(model_path_or_default(model.path))
    except (ModelError, OSError):
        return None
    return calibration_mismatch(personal, meta)


def adapt_status(state_dir: Path, enabled: bool, labels: dict[str, int],
                 model_digest: str | None = None, *, earlier_labels: int = 0,
                 model: ModelConfig | None = None) -> dict[str, Any]:
    """Whether a personal head is in use and the figures it was accepted with, the last fit's
    verdict, and the labels collected (``labels``: those the configured scene network can use,
    per source; ``earlier_labels``: how many more an earlier network computed, reported as
    ``labels_earlier_network`` when any). With ``model_digest`` (the configured scene model's
    SHA-256), a head fitted for another model is reported as not in use (``not_used`` says
    why), as the daemon then lets the shipped head decide; so is one that ``model`` (the
    configured model settings) never runs (:func:`unused_with`) or that was fitted for
    another calibration of its sidecar (``calibration_mismatch``)."""
    from rotwatchd.model.personal import read_personal

    folder = adapt_dir(state_dir)
    personal = read_personal(folder / HEAD_NAME)
    not_used = None
    if (personal is not None and model_digest is not None
            and personal.model_digest != model_digest):
        not_used = "fitted for another scene model"
    elif personal is not None and model is not None:
        not_used = unused_with(model) or sidecar_mismatch(personal, model)
    if not_used is not None:
        personal = None
    out: dict[str, Any] = {"enabled": enabled, "labels": labels,
                           "personal_head": personal is not None}
    if earlier_labels:
        out["labels_earlier_network"] = earlier_labels
    if not_used is not None:
        out["not_used"] = not_used
    if personal is not None:
        out["in_use"] = personal.figures
    with contextlib.suppress(OSError, ValueError):
        out["last_fit"] = json.loads((folder / LAST_FIT).read_text())
    return out


def personal_factory(state_dir: Path, base: ClassifierFactory) -> ClassifierFactory:
    """``base``, except that the default backend runs the personal head when one is in use
    (and fits the configured scene model)."""
    def make(model: ModelConfig) -> OrientationClassifier:
        from rotwatchd.model.personal import load_personal, read_personal
        from rotwatchd.model.registry import resolve

        personal = read_personal(adapt_dir(state_dir) / HEAD_NAME)
        if personal is None or resolve(model.backend) != "litert-adaptive":
            return base(model)
        why = unused_with(model)
        if why is not None:
            log.warning("adapt: personal head not used (%s); the shipped head decides", why)
            return base(model)
        try:
            from rotwatchd.model.fusion import with_review_threshold
            from rotwatchd.model.network import Runtime

            return with_review_threshold(
                load_personal(model.path, model.threads, personal,
                              Runtime(model.runtime, model.providers)), model.min_confidence)
        except ModelError as exc:
            log.warning("adapt: personal head not used (%s); the shipped head decides", exc)
            return base(model)
    return make


@dataclass
class _Idle:
    asleep_since: float | None = None
    changes: int = 0  # bumped on every notice, so the thread never sleeps through one


class AdaptWorker(StoppableThread):
    """Runs :func:`next_step` on a stoppable thread, following the SleepController
    (:meth:`on_power_state` is its listener). ``on_changed()`` is called after each
    collection and each fit, and while asleep when a look finds the labels or the head changed
    from another process (``rotwatchd adapt [--forget]``; once at each sleep's first look): the
    daemon then publishes status.json again, as it may be asleep for hours. ``clock`` is
    injected; :meth:`step` is what the thread runs, and what tests drive."""

    def __init__(self, adapter: Adapter, *, on_new_head: Callable[[], None] = lambda: None,
                 on_changed: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, batch: int = 50) -> None:
        super().__init__("rotwatchd-adapt")
        self.adapter = adapter
        self._on_new_head = on_new_head
        self._on_changed = on_changed
        self._clock = clock
        self._batch = batch
        self._idle = _Idle()
        self._seen = 0
        self.fits = 0
        self._shown: tuple[object, ...] | None = None  # the fingerprint status last showed

    def on_power_state(self, state: object) -> None:
        """SleepController listener: asleep from now, or awake (stop what runs)."""
        asleep = str(getattr(state, "value", state)) == "asleep"
        with self._cond:
            self._idle.asleep_since = self._clock() if asleep else None
            self._idle.changes += 1
            self._shown = None  # the first look while asleep publishes status once
            self._cond.notify_all()

    def settings_changed(self) -> None:
        """The adapter's settings were replaced (a config reload): look again now with them,
        instead of sleeping out a wait the old ``adapt.after_idle`` set (up to its whole
        length) or, with adaptation turned on, until the next power change."""
        with self._cond:
            self._idle.changes += 1
            self._cond.notify_all()

    def _cancelled(self) -> bool:
        with self._cond:
            return self._idle.asleep_since is None or self._stopping

    def step(self) -> float | None:
        """Do what is due now; returns how long the thread may wait (None: until notified)."""
        with self._cond:
            asleep_since = self._idle.asleep_since
            self._seen = self._idle.changes
            if self._stopping:
                return None
        action, wait = next_step(self._clock(), asleep_since, self.adapter.settings,
                                 self.adapter.pending(1), self.adapter.new_labels())
        if action == "collect":
            added = self.adapter.collect(self._batch, self._cancelled)
            log.info("adapt: %d label(s) collected while idle", added)
            self._on_changed()  # the label counts (and those of an earlier network) moved
        elif action == "fit":
            try:
                result = self.adapter.fit(self._cancelled)
            except ModelError as exc:
                log.warning("adapt: cannot fit: %s", exc)
                self.adapter.store.put("added_at_fit", self.adapter.store.get("added"))
                return None
            self.fits += 1
            if result.verdict.accepted:
                self._on_new_head()
            self._on_changed()  # the last fit's figures and verdict
        elif asleep_since is not None:
            # nothing due: `rotwatchd adapt` (or --forget) may have run from another process
            seen = self.adapter.fingerprint()
            if seen != self._shown:
                self._on_changed()
            self._shown = seen
        return wait

    def run(self) -> None:
        while True:
            try:
                wait = self.step()
            except Exception:  # a bug must not end adaptation for good, nor the daemon
                log.exception("adapt: step failed; tried again at the next idle spell")
                wait = None
            with self._cond:
                if self._stopping:
                    return
                if self._idle.changes != self._seen:
                    continue  # the power state changed while step() ran: look again
                if wait is None:
                    self._cond.wait()
                elif wait > 0:
                    self._cond.wait(wait)


class AdaptRuntime(Lifecycle):
    """Adaptation hung on a running daemon: the label collector and the fits while asleep
    (following ``sleep``, the SleepController), the personal head in the classifier factory,
    and the ``adapt`` object of status.json."""

    def __init__(self, daemon: Daemon, worker: AdaptWorker) -> None:
        self._daemon = daemon
        self.worker = worker

    @classmethod
    def attach(cls, daemon: Daemon, sleep: SleepController) -> AdaptRuntime:
        """Connect to ``daemon`` before its start(). With ``adapt.enabled`` false nothing is
        collected nor fitted, but a personal head already in use stays in use until
        ``rotwatchd adapt --forget``."""
        cfg = daemon.config
        daemon.classifier_factory = personal_factory(cfg.state_dir, daemon.classifier_factory)
        adapter = Adapter(cfg.state_dir, daemon.journal, cfg.adapt, cfg.model,
                          max_pixels=cfg.limits.max_pixels, folders=label_folders(cfg))

        head = adapter.folder / HEAD_NAME
        seen = [_stamp(head)]

        def reload_classifiers() -> None:
            seen[0] = _stamp(head)
            daemon.model.release()  # asleep, workers parked: the next file loads the new head
            daemon.mark_status_dirty()

        def on_power_state(state: PowerState) -> None:
            runtime.worker.on_power_state(state)
            if state is PowerState.AWAKE and _stamp(head) != seen[0]:
                reload_classifiers()  # written (or forgotten) by `rotwatchd adapt` meanwhile

        runtime = cls(daemon, AdaptWorker(adapter, on_new_head=reload_classifiers,
                                          on_changed=daemon.mark_status_dirty))
        sleep.add_listener(on_power_state)
        daemon.add_lifecycle_listener(runtime)
        daemon.add_status_section("adapt", adapter.status)
        return runtime

    def on_ready(self) -> None:
        self.worker.start()

    def on_stopping(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the adaptation thread and close the label store. Idempotent: called at
        ``on_stopping``, and again after a daemon that stopped (or never started)."""
        self.worker.stop_and_join()
        self.worker.adapter.close()

    def on_reloaded(self, error: str | None) -> None:
        if error is None:
            adapter = self.worker.adapter
            adapter.settings, adapter.model = self._daemon.config.adapt, self._daemon.config.model
            adapter.folders = label_folders(self._daemon.config)
            adapter.store.max_labels = adapter.settings.max_labels
            self.worker.settings_changed()  # asleep, it may wait on the old after_idle
