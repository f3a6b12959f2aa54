"""Process one file end to end: guard, hash, journal, inspect, decide, write, file away.

This is where the daemon acts; *what* to do is decided by ``decision.decide`` (pure). Every
outcome is journaled and logged in one line; nothing a file can contain makes this raise, and
no path loses a byte: outputs are atomic copies that never replace another file, originals are
only moved or deleted (when so configured) after their upright copy is on disk. A file is
opened once (rotwatchd.output.inboxfile) and everything is read through that handle.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from rotwatchd.config import Config, InboxConfig, ModelConfig
from rotwatchd.formats.image import ImageInfo, inspect, model_input, verify_jpeg
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat, named_as_image
from rotwatchd.output.atomic import UnsafeFolder
from rotwatchd.output.filing import (
    CannotMove,
    copy_into,
    dispose_original,
    move_into,
    relative_to_inbox,
)
from rotwatchd.output.inboxfile import InboxFile, Replaced, open_inbox_file
from rotwatchd.output.writer import WriteResult, write_corrected
from rotwatchd.service.decision import Decision, Facts, decide, needs_model

if TYPE_CHECKING:  # the model package (numpy, the runtime) is imported when a model is loaded
    from rotwatchd.model.base import OrientationClassifier, Prediction
    from rotwatchd.service.journal import (  # the daemon's (sqlite3): not check/fix's
        Journal,
        Outcome,
    )
    from rotwatchd.watch.workqueue import WorkItem

    #: What happened to a file: a journal outcome, ``skipped`` (nothing to do: gone, already
    #: processed, a link to an inbox file) or ``deferred`` (looked at again later).
    ResultOutcome = Outcome | Literal["skipped", "deferred"]

log = logging.getLogger(__name__)

#: What a file still being written looks like (ImageProblem reasons): such a file stays in
#: the inbox until it has been unchanged for ``watch.unfinished_wait``.
UNFINISHED_LOOKS = frozenset({"truncated", "corrupt", "not-an-image"})

#: Longer side of the image handed to the classifier (JPEGs are decoded at reduced DCT scale).
MODEL_INPUT_SIDE = 384


class ModelSource(Protocol):
    """Where workers get a classifier for one prediction (``ClassifierPool`` fits)."""

    def lease(self) -> AbstractContextManager[OrientationClassifier]: ...


class WorkHooks(Protocol):
    """Called around each file; the power helper's SleepController fits this protocol."""

    def activity(self, event_time: float | None = None) -> None:
        """A file was noticed at ``event_time`` (monotonic seconds; None: now)."""

    def begin_work(self, timeout: float | None = None) -> bool:
        """A worker is about to process a file; False when shutting down instead."""

    def end_work(self) -> None:
        """That worker is done with it."""

    def inference_started(self) -> float | None:
        """The model is about to run; returns the wake latency it measured, if any."""


class Retries(Protocol):
    """How the processor hands a file back to be looked at later (the daemon's settler)."""

    def later(self, path: Path, inbox: InboxConfig, delay: float) -> None:
        """Look at an unfinished-looking file again in ``delay`` seconds (or when written)."""

    def failed(self, path: Path, inbox: InboxConfig, exc: OSError) -> bool:
        """Writing failed (disk full, read-only output); True when it will be tried again."""


class NoHooks:
    """Hooks for a daemon without power management: never parks, never measures."""

    def activity(self, event_time: float | None = None) -> None:
        pass

    def begin_work(self, timeout: float | None = None) -> bool:
        return True

    def end_work(self) -> None:
        pass

    def inference_started(self) -> float | None:
        return None




@dataclass(frozen=True)
class Job:
    """One inbox file as the processor carries it through its steps."""

    path: Path
    inbox: InboxConfig
    relative: Path  # below the inbox: its place under output, review and quarantine
    confirmed: bool  # a close or rename event was seen (see Processor.process)


@dataclass(frozen=True)
class OpenJob(Job):
    """A :class:`Job` once its file is open: every read goes through ``source``."""

    source: InboxFile
    digest: str  # SHA-256 of the content


@dataclass(frozen=True)
class Result:
    """What happened to one file."""

    path: Path
    outcome: ResultOutcome
    detail: str
    decision: Decision | None = None
    output: Path | None = None


def _problem(exc: ImageProblem) -> str:
    """``reason: message`` without the path prefix ImageProblem puts in its text."""
    text = str(exc)
    prefix = f"{exc.path}: " if exc.path is not None else ""
    return f"{exc.reason}: {text.removeprefix(prefix)}"


def _next_try(exc: OSError, retried: bool) -> str:
    """What happens next to a file whose write failed with ``exc``, for its log line."""
    if not retried:
        return "left in the inbox, tried again on its next event or rescan"
    if isinstance(exc, UnsafeFolder):
        return "left in the inbox, tried again once that folder is no longer a symbolic link"
    return "retried once the output can be written again"


def review_threshold(model: ModelConfig) -> float:
    """``model.min_confidence`` if set, else the threshold calibrated for the model/backend."""
    if model.min_confidence is not None:
        return model.min_confidence
    from rotwatchd.model import calibrated_threshold

    return calibrated_threshold(model.backend, model.path)


@dataclass(frozen=True)
class Examined:
    """What :func:`examine` found: the facts to decide on and, for a readable image, what
    inspect() read (a JPEG's bytes and structure, for the writer to reuse)."""

    facts: Facts
    info: ImageInfo | None = None


def examine(path: Path, model: ModelSource, *, max_pixels: int, verify: bool = True,
            hooks: WorkHooks | None = None, human_correction: int | None = None) -> Examined:
    """Inspect ``path`` and, only when the decision needs it, ask the model (never when a
    person already gave ``human_correction`` for this content); the model is only ever
    leased (and so loaded) then.

    Each image is decoded once: a JPEG the model must see is checked by decoding its model
    input; one the model need not see is checked here only with ``verify`` (``check``),
    otherwise by the writer's own decode (``info.verified`` False: pass it on).
    A bad file gives ``Facts(problem=...)``; raises ModelError when the model cannot load,
    OSError when the file cannot be read after inspection.
    """
    try:
        info = inspect(path, max_pixels=max_pixels, verify=False)
    except ImageProblem as exc:
        return Examined(Facts(problem=_problem(exc)))
    except UnsupportedFormat as exc:
        return Examined(Facts(unsupported=exc.format))
    facts = Facts(exif_orientation=info.exif_orientation, animated=info.animated,
                  pixels=info.width * info.height,
                  applied_orientation=info.applied_orientation,
                  human_correction=human_correction)
    try:
        if not needs_model(facts, max_pixels):
            if verify and info.jpeg is not None and not info.verified:
                verify_jpeg(path, info.jpeg)
                info = replace(info, verified=True)
            return Examined(facts, info)
        image = model_input(path, info, MODEL_INPUT_SIDE, max_pixels=max_pixels)
    except ImageProblem as exc:  # decoding found what the header did not show
        return Examined(Facts(problem=_problem(exc)))
    info = replace(info, verified=True)
    with model.lease() as classifier:
        if hooks is not None:
            hooks.inference_started()
        prediction = classifier.predict(image)
    return Examined(Facts(exif_orientation=info.exif_orientation, pixels=facts.pixels,
                          prediction=prediction), info)


def gather_facts(path: Path, model: ModelSource, *, max_pixels: int,
                 hooks: WorkHooks | None = None, human_correction: int | None = None) -> Facts:
    """The facts of :func:`examine` for ``path``, every image fully verified."""
    return examine(path, model, max_pixels=max_pixels, hooks=hooks,
                   human_correction=human_correction).facts


class Processor:
    """Turns a :class:`WorkItem` into an output, a review copy or a quarantined file."""

    def __init__(self, config: Config, journal: Journal, model: ModelSource, *,
                 hooks: WorkHooks | None = None, retries: Retries | None = None,
                 on_result: Callable[[Result], None] | None = None) -> None:
        """``retries`` None: nothing is looked at again (one-shot use): a file that looks
        unfinished counts as broken, a failed write stays an error."""
        self.config = config
        self.journal = journal
        self.model = model
        self.hooks: WorkHooks = hooks or NoHooks()
        self.retries = retries
        self._on_result = on_result
        self._threshold: tuple[ModelConfig, float] | None = None

    def handle(self, item: WorkItem) -> None:
        """Worker entry point: waits for the power hooks, processes, reports. Never raises
        for a bad file (an unexpected bug is logged and journaled as ``error``)."""
        if not self.hooks.begin_work():
            return  # shutting down: the file stays in the inbox for the next start
        try:
            result = self.process(item.path, item.inbox, confirmed=item.confirmed)
        finally:
            self.hooks.end_work()
        if self._on_result is not None:
            self._on_result(result)

    def process(self, path: Path, inbox: InboxConfig, *, confirmed: bool = True) -> Result:
        """Handle one file. ``confirmed`` False (found by a scan or by polling, no close event
        seen) makes a broken-looking file that changed recently wait instead of being
        quarantined: it may still be being written."""
        job = Job(path, inbox, relative_to_inbox(path, inbox.path), confirmed)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return Result(path, "skipped", "gone before it could be processed")
        except OSError as exc:
            return self._quarantine(job, f"stat:{exc.errno}", "unreadable",
                                    exc.strerror or str(exc))
        pseudo = f"stat:{st.st_size}:{st.st_mtime_ns}"
        if stat.S_ISLNK(st.st_mode):
            return self._symlink(job, st)
        if not stat.S_ISREG(st.st_mode):
            return self._quarantine(job, pseudo, "not-a-file", "not a regular file", st=st)
        if st.st_size == 0 and not named_as_image(path):
            return Result(path, "skipped", "empty, and not named as an image")
        if st.st_size == 0:
            delay = self._unfinished_delay(confirmed, st)
            if delay is not None:
                return self._defer(job, "empty", delay)
            return self._quarantine(job, pseudo, "empty", "file is empty", st=st)
        if st.st_size > self.config.limits.max_file_size:
            return self._quarantine(job, pseudo, "too-large",
                                    f"{st.st_size} bytes > limits.max_file_size", st=st)
        try:
            source = open_inbox_file(path, inbox.path, expected=st)
        except FileNotFoundError:
            return Result(path, "skipped", "gone before it could be processed")
        except (Replaced, UnsafeFolder) as exc:
            # the name changed under us: its own events bring whatever is there now back
            log.warning("not reading %s: %s", path, exc.strerror)
            return Result(path, "skipped", f"not read: {exc.strerror}")
        except OSError as exc:
            return self._quarantine(job, pseudo, "unreadable", exc.strerror or str(exc),
                                    st=st)
        with source:
            return self._process_opened(job, source)

    def _process_opened(self, job: Job, source: InboxFile) -> Result:
        """Hash, journal and handle a file held open (every read goes through ``source``)."""
        path, key, st = source.path, str(source.path), source.st
        try:
            digest = source.digest()
        except OSError as exc:
            return self._quarantine(job, f"stat:{st.st_size}:{st.st_mtime_ns}", "unreadable",
                                    exc.strerror or str(exc), source=source)
        if not self.journal.needs_processing(key, digest):
            self.journal.refresh_stat(key, digest, st)  # e.g. a new ctime, same content
            return Result(path, "skipped", "already processed")
        if self.journal.begin(key, digest, st.st_size, st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
                              inode=st.st_ino):
            log.info("resuming %s: a previous run stopped while processing it", path)
        try:
            return self._process_image(OpenJob(path, job.inbox, job.relative, job.confirmed,
                                               source, digest))
        except OSError as exc:  # disk full, permissions on the output...: retried later
            retried = self.retries is not None and self.retries.failed(path, job.inbox, exc)
            log.error("error processing %s (%s): %s", path, _next_try(exc, retried), exc)
            detail = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug or a model failure: keep the file, say so, go on
            log.exception("error processing %s", path)
            detail = f"{type(exc).__name__}: {exc}"
        self.journal.finish(key, digest, "error", detail=detail)
        return Result(path, "error", detail)

    def _review_threshold(self) -> float:
        """:func:`review_threshold` of the current model settings, read once per setting (a
        reload with other model settings also reloads the model, and so the threshold)."""
        model, cached = self.config.model, self._threshold
        if cached is None or cached[0] != model:
            cached = self._threshold = (model, review_threshold(model))
        return cached[1]

    def _unfinished_delay(self, confirmed: bool, st: os.stat_result) -> float | None:
        """Seconds until a broken-looking file will have been unchanged for
        ``watch.unfinished_wait`` (at least WRITING_TIMEOUT when no close event was seen):
        its writer may only be pausing. None once it has (or without a way to look again):
        then it counts as broken. A close event proves nothing: pieces may follow."""
        if self.retries is None:
            return None
        wait = self.config.watch.unfinished_wait
        if not confirmed:
            from rotwatchd.watch.settle import WRITING_TIMEOUT  # the daemon's: fix/check never wait

            wait = max(wait, WRITING_TIMEOUT)
        age = time.time() - st.st_mtime
        if age >= wait or age < -wait:  # unchanged long enough, or a far-future timestamp
            return None
        return wait - max(age, 0.0)

    def _defer(self, job: Job, why: str, delay: float) -> Result:
        path = job.path
        assert self.retries is not None
        self.retries.later(path, job.inbox, delay)
        log.info("%s looks unfinished (%s): left in the inbox, looked at again when written to "
                 "or in %.0fs; quarantined only if it still looks so after %.0fs unchanged",
                 path, why, delay, self.config.watch.unfinished_wait)
        return Result(path, "deferred", why)

    def _process_image(self, job: OpenJob) -> Result:
        cfg, source, inbox = self.config, job.source, job.inbox
        examined = examine(source.reader, self.model, max_pixels=cfg.limits.max_pixels,
                           verify=False, hooks=self.hooks,
                           human_correction=self.journal.human_label(job.digest))
        facts, info = examined.facts, examined.info
        decision = decide(facts, min_confidence=self._review_threshold(),
                          max_pixels=cfg.limits.max_pixels)
        if decision.action == "quarantine":
            reason, _, message = decision.reason.partition(": ")
            return self._bad(job, reason, message, decision)
        if decision.action == "review":
            return self._review(job, decision, facts.prediction)
        try:
            written = write_corrected(source.reader, inbox.output / job.relative,
                                      orientation=decision.orientation, mode=cfg.output.mode,
                                      hardlink_upright=cfg.output.hardlink_upright,
                                      max_pixels=cfg.limits.max_pixels, within=inbox.output,
                                      jpeg=info.jpeg if info is not None else None,
                                      verified=info is None or info.verified)
        except UnsupportedFormat as exc:
            return self._review(job, Decision("review", f"unsupported format {exc.format}"))
        except ImageProblem as exc:  # the writer's decode found damage (truncated...)
            message = str(exc).removeprefix(f"{exc.path}: " if exc.path is not None else "")
            return self._bad(job, exc.reason, message, decision)
        return self._written(job, decision, written)

    def _bad(self, job: OpenJob, reason: str, message: str, decision: Decision) -> Result:
        """A file that is not a usable image: ignored (not named as one), left for its writer
        (looks unfinished), or quarantined."""
        path, st, digest = job.path, job.source.st, job.digest
        if reason == "not-an-image" and not named_as_image(path):
            self.journal.finish(str(path), digest, "ignored", detail="not an image")
            log.info("%s is not an image and not named as one: left in the inbox, ignored",
                     path)
            return Result(path, "ignored", "not an image")
        delay = self._unfinished_delay(job.confirmed, st) if reason in UNFINISHED_LOOKS else None
        if delay is not None:
            self.journal.finish(str(path), digest, "waiting",
                                detail=f"looks unfinished ({reason}): waiting for its writer")
            return self._defer(job, reason, delay)
        return self._quarantine(job, digest, reason, message or reason, decision,
                                source=job.source)

    def _written(self, job: OpenJob, decision: Decision, written: WriteResult) -> Result:
        """Journal and log a written upright copy, then dispose of the original."""
        cfg = self.config
        path, st, digest = job.path, job.source.st, job.digest
        how = f"{decision.reason}, {written.action}" + "".join(f"; {n}" for n in written.notes)
        if cfg.output.original != "keep":  # a restart must know the output is already there
            self.journal.intend(str(path), digest, "dispose", output=str(written.path),
                                detail=how)
        try:
            fate = dispose_original(path, cfg.output.original, cfg.output.done_dir,
                                    job.relative, source=job.source)
        except (CannotMove, OSError) as exc:
            fate = f"original left in place ({exc})"
        self.journal.finish(str(path), digest, "done", correction=decision.correction,
                            confidence=decision.confidence, source=decision.source,
                            output=str(written.path), size=st.st_size, mtime_ns=st.st_mtime_ns,
                            ctime_ns=st.st_ctime_ns, inode=st.st_ino)
        log.info("%s -> %s (%s; %s)", path, written.path, how, fate)
        return Result(path, "done", how, decision, written.path)

    def _review(self, job: OpenJob, decision: Decision,
                prediction: Prediction | None = None) -> Result:
        """Copy the file to the review folder and queue it for a person
        (rotwatchd.service.review)."""
        path, st, digest, inbox = job.path, job.source.st, job.digest, job.inbox
        placed = copy_into(path, inbox.review, job.relative, reader=job.source.reader)
        self.journal.add_review(
            str(path), digest, review_copy=str(placed.path), inbox=str(inbox.path),
            guess=decision.correction, confidence=decision.confidence,
            probabilities=prediction.probabilities if prediction is not None else None,
            reason=decision.reason)
        self.journal.finish(str(path), digest, "review", correction=decision.correction,
                            confidence=decision.confidence, source=decision.source,
                            output=str(placed.path), detail=decision.reason,
                            size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
                            inode=st.st_ino)
        again = " (already there from an earlier attempt)" if placed.reused else ""
        log.info("%s needs review (%s): copied to %s%s", path, decision.reason, placed.path,
                 again)
        return Result(path, "review", decision.reason, decision, placed.path)

    def _symlink(self, job: Job, st: os.stat_result) -> Result:
        path, inbox = job.path, job.inbox
        target = os.readlink(path)
        resolved = Path(os.path.realpath(path))
        if resolved.is_relative_to(inbox.path.resolve()) and resolved.is_file():
            # the target is an inbox file and is processed on its own
            log.info("%s is a symbolic link to %s in the inbox: left alone, the file it points "
                     "to is processed on its own", path, target)
            return Result(path, "skipped", f"symlink to {target} inside the inbox")
        return self._quarantine(job, f"symlink:{target}", "symlink",
                                f"symlink pointing outside the inbox (to {target})", st=st)

    def _quarantine(self, job: Job, digest: str, reason: str, message: str,
                    decision: Decision | None = None, *, source: InboxFile | None = None,
                    st: os.stat_result | None = None) -> Result:
        """Journal the intent, move the file (as opened, when ``source`` is given) into the
        quarantine folder, journal the outcome: a crash in between is completed at the next
        start (see rotwatchd.service.recovery)."""
        path, key = job.path, str(job.path)
        if not self.journal.needs_processing(key, digest):
            return Result(path, "skipped", "already quarantined")
        st = source.st if source is not None else st
        self.journal.intend(key, digest, "quarantine", detail=f"{reason}: {message}",
                            inode=st.st_ino if st is not None else None)
        try:
            moved: Path | None = move_into(path, job.inbox.quarantine, job.relative,
                                           source=source, inbox=job.inbox.path)
            where = f"moved to {moved}"
        except CannotMove as exc:
            moved, where = None, f"left in place, could not move: {exc}"
        self.journal.finish(key, digest, "quarantined", output=str(moved) if moved else None,
                            detail=f"{reason}: {message}; {where}")
        log.warning("quarantined %s: %s (%s); %s", path, reason, message, where)
        return Result(path, "quarantined", f"{reason}: {message}", decision, moved)
