"""The review queue: images the model was unsure of, settled by a person.

When the daemon is not sure enough of an image it copies it to the inbox's review folder and
queues it in the journal with the model's guess and its four probabilities
(:meth:`Journal.add_review`). A person then picks the correction (0, 90, 180 or 270 degrees
clockwise; 0 is "leave as is"), from ``rotwatchd review`` or the web page, and
:meth:`ReviewQueue.settle` carries it out the way the daemon would have:

1. the upright copy is written by the daemon's writer (``write_corrected``: lossless where
   the daemon is, metadata kept, atomic, never over another file) from the review copy, or
   from the original when the review copy was removed by hand;
2. the answer is journaled as a human label and the file's row becomes ``done`` (source
   ``human``), in one transaction; the same content dropped again, under any name, is then
   turned by that label and never queued again (``decision.decide``);
3. the review copy is removed, and the original is kept, moved or deleted as
   ``output.original`` says, only if it is still the content that was reviewed.

A crash between steps leaves nothing half done that a second ``settle`` would not finish:
writing the same bytes again reuses the output. Settling is serialised across processes (the
daemon's web page and the CLI) by a lock file in ``state_dir``. Files are read without
following symbolic links from their folder's handle (rotwatchd.output.inboxfile), so a link
placed in the review folder is never read through.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rotwatchd.config import Config, InboxConfig
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat
from rotwatchd.output.atomic import UnsafeFolder
from rotwatchd.output.filing import CannotMove, dispose_original, relative_to_inbox
from rotwatchd.output.inboxfile import InboxFile, Replaced, open_inbox_file
from rotwatchd.output.writer import write_corrected
from rotwatchd.service.decision import ORIENTATION_FOR_CORRECTION, confidence_text
from rotwatchd.service.journal import Journal, ReviewItem

__all__ = ["CORRECTIONS", "AlreadySettled", "CannotSettle", "ReviewItem", "ReviewQueue",
           "Settled", "UnknownItem"]

log = logging.getLogger(__name__)

#: The answers a person can give: clockwise degrees that make the image upright.
CORRECTIONS: Final = (0, 90, 180, 270)
LOCK_NAME: Final = "review.lock"


class UnknownItem(LookupError):
    """No review item has this id."""

    def __init__(self, item_id: int) -> None:
        super().__init__(f"no review item {item_id}")

    def __str__(self) -> str:
        return str(self.args[0])


class AlreadySettled(Exception):
    """The item was settled before (by this or another process); ``item`` says how."""

    def __init__(self, item: ReviewItem) -> None:
        super().__init__(f"review item {item.id} was already settled ({item.answer} deg)")
        self.item = item


class CannotSettle(Exception):
    """The item cannot be settled as asked; ``str(exc)`` is one line saying why."""


@dataclass(frozen=True)
class Settled:
    """A settled item (``item.answer`` set), where its upright copy is and how it was made."""

    item: ReviewItem
    output: Path
    note: str


class ReviewQueue:
    """The waiting items of ``journal`` and the way to settle them under ``config``.

    Thread-safe; several processes may hold one on the same ``state_dir``. Items queued by a
    daemon from before the queue existed (a ``review`` row without an entry) are adopted when
    their inbox is configured."""

    def __init__(self, config: Config, journal: Journal) -> None:
        self.journal = journal
        self._config = config
        self._lock = threading.Lock()
        self._adopt_unqueued()

    def reconfigure(self, config: Config) -> None:
        """Use ``config`` (a reloaded one) from now on."""
        self._config = config

    def waiting(self) -> list[ReviewItem]:
        """Items waiting for a person, oldest first."""
        return self.journal.review_items(settled=False)

    def labels(self) -> list[ReviewItem]:
        """Settled items (the human labels), in the order they were settled."""
        return self.journal.review_items(settled=True)

    def backlog(self) -> int:
        return self.journal.review_backlog()

    def item(self, item_id: int) -> ReviewItem:
        """Raises UnknownItem."""
        found = self.journal.review_item(item_id)
        if found is None:
            raise UnknownItem(item_id)
        return found

    def image_path(self, item_id: int) -> Path:
        """The file to show for a waiting or settled item: its review copy, else its original
        while that still holds the reviewed content. Raises UnknownItem, CannotSettle."""
        item = self.item(item_id)
        with self._open_source(item) as source:
            return source.path

    def settle(self, item_id: int, correction: int) -> Settled:
        """Write the upright copy turned by ``correction`` (clockwise degrees; 0 keeps it as it
        is), journal the answer, remove the review copy and apply ``output.original``.

        Raises ValueError (a correction not in CORRECTIONS), UnknownItem, AlreadySettled,
        CannotSettle (source gone, inbox no longer configured, a format that cannot be
        turned), OSError (the output cannot be written: nothing was journaled)."""
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
        with self._lock, self._cross_process_lock():
            item = self.item(item_id)
            if item.answer is not None:
                raise AlreadySettled(item)
            inbox = self._inbox_of(item)
            with self._open_source(item) as source:
                output, note = self._write(item, inbox, source, correction)
                guess = "no guess" if item.guess is None else \
                    f"model guessed {item.guess} deg at {confidence_text(item.confidence or 0)}"
                detail = f"a person said {correction} deg ({guess}), {note}"
                if not self.journal.settle_review(item.id, correction, str(output), detail):
                    raise AlreadySettled(self.item(item_id))
                if source.path == Path(item.review_copy):
                    self._remove_copy(source)
            fate = self._dispose_original(item, inbox)
        log.info("review %d settled: %s -> %s (%s; %s)", item.id, item.path, output, detail,
                 fate)
        return Settled(self.item(item_id), output, note)

    def _write(self, item: ReviewItem, inbox: InboxConfig, source: InboxFile,
               correction: int) -> tuple[Path, str]:
        cfg = self._config
        relative = relative_to_inbox(Path(item.path), inbox.path)
        try:
            written = write_corrected(
                source.reader, inbox.output / relative,
                orientation=ORIENTATION_FOR_CORRECTION[correction], mode=cfg.output.mode,
                hardlink_upright=cfg.output.hardlink_upright, max_pixels=cfg.limits.max_pixels,
                within=inbox.output)
        except UnsupportedFormat as exc:
            raise CannotSettle(f"review item {item.id}: rotwatchd cannot turn {exc.format} "
                               "files; settle it as it is (0) and turn it elsewhere") from None
        except ImageProblem as exc:
            text = str(exc).removeprefix(f"{exc.path}: " if exc.path is not None else "")
            raise CannotSettle(f"review item {item.id}: {source.path} cannot be turned, it is "
                               f"damaged ({exc.reason}: {text})") from None
        note = ", ".join((written.action, *written.notes))
        return written.path, note

    def _inbox_of(self, item: ReviewItem) -> InboxConfig:
        for inbox in self._config.inboxes:
            if str(inbox.path) == item.inbox:
                return inbox
        raise CannotSettle(f"review item {item.id}: its inbox {item.inbox} is no longer in "
                           "the configuration")

    @contextlib.contextmanager
    def _open_source(self, item: ReviewItem) -> Iterator[InboxFile]:
        """The review copy, or the original, opened safely and holding the reviewed bytes."""
        inbox = self._inbox_of(item)
        for path, folder in ((Path(item.review_copy), inbox.review), (Path(item.path),
                                                                      inbox.path)):
            opened = _open_if_same(path, folder, item.sha256)
            if opened is not None:
                with opened:
                    yield opened
                return
        raise CannotSettle(f"review item {item.id}: neither its review copy {item.review_copy} "
                           f"nor its original {item.path} holds the reviewed image any more")

    def _remove_copy(self, source: InboxFile) -> None:
        try:
            source.unlink()
        except OSError as exc:  # the output is written and journaled: only say so
            log.warning("review copy %s left in place: %s", source.path, exc)

    def _dispose_original(self, item: ReviewItem, inbox: InboxConfig) -> str:
        output = self._config.output
        if output.original == "keep":
            return "original kept"
        original = _open_if_same(Path(item.path), inbox.path, item.sha256)
        if original is None:
            return "original no longer in the inbox"
        with original:
            relative = relative_to_inbox(original.path, inbox.path)
            try:
                return dispose_original(original.path, output.original, output.done_dir,
                                        relative, source=original)
            except (CannotMove, OSError) as exc:
                return f"original left in place ({exc})"

    @contextlib.contextmanager
    def _cross_process_lock(self) -> Iterator[None]:
        fd = os.open(self._config.state_dir / LOCK_NAME,
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o660)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _adopt_unqueued(self) -> None:
        """Queue ``review`` rows a daemon without the queue left (their copy must exist)."""
        for record in self.journal.unqueued_reviews():
            inbox = next((i for i in self._config.inboxes
                          if Path(record.path).is_relative_to(i.path)), None)
            if inbox is None or record.output is None:
                continue
            self.journal.add_review(
                record.path, record.sha256, review_copy=record.output, inbox=str(inbox.path),
                guess=record.correction, confidence=record.confidence, probabilities=None,
                reason=record.detail or "queued before the review queue existed")


def _open_if_same(path: Path, folder: Path, sha256: str) -> InboxFile | None:
    """``path`` below ``folder`` opened without following links, if it holds ``sha256``."""
    try:
        opened = open_inbox_file(path, folder)
    except (FileNotFoundError, Replaced, UnsafeFolder, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    try:
        if opened.digest() == sha256:
            return opened
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
    opened.close()
    return None
