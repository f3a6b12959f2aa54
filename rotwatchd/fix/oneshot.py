"""One-shot work without the daemon: ``rotwatchd check`` and ``rotwatchd fix``.

Both use the daemon's decision and writer, never the journal, and never modify their inputs:
``fix`` writes upright copies (and review copies of uncertain images) under an output folder
that must lie outside every input folder; bad images are reported and left where they are,
files that are plainly not images (a LICENSE, notes) are skipped and counted.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rotwatchd.config import LimitsConfig, ModelConfig, OutputConfig
from rotwatchd.formats.image import ImageInfo
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat, named_as_image
from rotwatchd.output.filing import copy_into
from rotwatchd.output.inboxfile import is_ignored
from rotwatchd.output.lossless_jpeg import find_jpegtran
from rotwatchd.output.writer import write_corrected
from rotwatchd.service.decision import Decision, Facts, confidence_text, decide
from rotwatchd.service.processor import Examined, ModelSource, examine, review_threshold

log = logging.getLogger(__name__)



class OutputInsideInput(Exception):
    """``fix`` was asked to write into a folder it reads (or to read its own output folder)."""


@dataclass(frozen=True)
class Assessment:
    """``check``'s answer for one file; ``problem`` set means it is not a usable image."""

    path: Path
    decision: Decision

    @property
    def problem(self) -> str | None:
        return self.decision.reason if self.decision.action == "quarantine" else None

    def as_json(self) -> dict[str, Any]:
        """The ``check --json`` object: path, correction, confidence, source, decision; for
        a mirrored orientation also ``"mirror": true`` and ``exif_orientation`` (the
        correction is then the turn before a left-right mirror)."""
        d = self.decision
        if self.problem is not None:
            reason, _, message = self.problem.partition(": ")
            return {"path": str(self.path), "error": reason, "message": message or reason}
        out: dict[str, Any] = {"path": str(self.path), "correction": d.correction,
                               "confidence": d.confidence, "source": d.source,
                               "decision": d.action}
        if d.mirror:
            out.update(mirror=True, exif_orientation=d.exif_orientation)
        if d.action == "review":
            out["reason"] = d.reason
        return out

    def as_line(self) -> str:
        d = self.decision
        if self.problem is not None:
            return f"{self.path}: ERROR {self.problem}"
        if d.correction is None:
            return f"{self.path}: {d.action} ({d.reason})"
        confidence = confidence_text(d.confidence) if d.confidence is not None else "?"
        mirror = (f" then mirror left-right (EXIF orientation {d.exif_orientation})"
                  if d.mirror else "")
        return (f"{self.path}: {d.action} correction {d.correction}{mirror} "
                f"(confidence {confidence}, {d.source})")


def look(path: Path, model: ModelSource, limits: LimitsConfig) -> Facts:
    """What is known about ``path`` before deciding: a symlink or a missing or special file
    is a problem; the model is asked only when the decision needs it (and only then loaded),
    every image verified. Raises ModelError if the model fails, OSError when the file cannot
    be read after inspection."""
    return _examine(path, model, limits, verify=True).facts


def _examine(path: Path, model: ModelSource, limits: LimitsConfig, *,
             verify: bool) -> Examined:
    if path.is_symlink() or not path.is_file():
        what = "a symlink" if path.is_symlink() else "not a regular file"
        if not path.exists() and not path.is_symlink():
            what = "no such file"
        return Examined(Facts(problem=f"not-a-file: {what}"))
    return examine(path, model, max_pixels=limits.max_pixels, verify=verify)


#: ``min_confidence`` or how to get it (called only when the model decides a file: reading the
#: calibrated threshold imports the model package, which a run decided by tags never needs).
Threshold = float | Callable[[], float]


def assess(path: Path, model: ModelSource, min_confidence: Threshold,
           limits: LimitsConfig) -> Assessment:
    """Decide what the daemon would do with ``path`` (``min_confidence``: see
    :func:`rotwatchd.service.processor.review_threshold`), every image verified. Raises ModelError
    if the model fails."""
    return _judge(path, model, min_confidence, limits, verify=True)[0]


def _judge(path: Path, model: ModelSource, min_confidence: Threshold, limits: LimitsConfig, *,
           verify: bool) -> tuple[Assessment, ImageInfo | None]:
    examined = _examine(path, model, limits, verify=verify)
    if callable(min_confidence):
        min_confidence = min_confidence() if examined.facts.prediction is not None else 1.0
    decision = decide(examined.facts, min_confidence=min_confidence,
                      max_pixels=limits.max_pixels)
    return Assessment(path, decision), examined.info


@dataclass(frozen=True)
class Judged:
    """A decision and what was read to reach it (a JPEG's bytes and whether they were
    decoded yet), for the writer to reuse: see :func:`fix_file`."""

    decision: Decision
    info: ImageInfo | None = None


def expand(paths: list[Path], ignore_patterns: tuple[str, ...]) -> Iterator[tuple[Path, Path]]:
    """Files and folders -> ``(file, relative name)``; folders recursively, sorted, skipping
    temp/hidden names and symlinked folders."""
    for given in paths:
        if given.is_dir():
            for dirpath, dirnames, filenames in os.walk(given):
                here = Path(dirpath)
                dirnames[:] = sorted(d for d in dirnames if not is_ignored(Path(d),
                                                                           ignore_patterns))
                for name in sorted(filenames):
                    if not is_ignored(Path(name), ignore_patterns):
                        yield here / name, (here / name).relative_to(given)
        else:
            yield given, Path(given.name)


def check_output_outside(paths: list[Path], outdir: Path) -> None:
    """Raise OutputInsideInput when ``outdir`` equals, lies inside or contains an input folder
    (a second run would read the first run's copies), or is the folder of an input file (its
    copy would take the original's name); symlinks resolved."""
    out = outdir.resolve()
    for given in paths:
        if given.is_file() and given.resolve().parent == out:
            raise OutputInsideInput(f"the output folder {outdir} holds the input file {given}: "
                                    "its copy would replace it; choose another folder")
        if not given.is_dir():
            continue
        folder = given.resolve()
        if out == folder or out.is_relative_to(folder):
            raise OutputInsideInput(f"the output folder {outdir} is inside the input folder "
                                    f"{given}; choose one outside it")
        if folder.is_relative_to(out):
            raise OutputInsideInput(f"the input folder {given} is inside the output folder "
                                    f"{outdir}; choose an output outside it")


OutcomeKind = Literal["written", "unchanged", "review", "failed", "skipped"]


@dataclass(frozen=True)
class FileOutcome:
    """What ``fix`` did with one file: ``kind`` (a :class:`FixSummary` count), a phrase for
    the progress line, the upright copy or review copy (``output``) and the decision, when
    there are."""

    kind: OutcomeKind
    message: str
    output: Path | None = None
    decision: Decision | None = None


@dataclass
class FixSummary:
    """What ``fix`` did: ``written`` counts new upright copies, ``unchanged`` images whose
    upright copy (or review copy) was already there from an earlier run, so nothing was written;
    ``skipped`` files that are not images (and were not meant as images by their name);
    ``failed`` images that could not be handled."""

    written: int = 0
    unchanged: int = 0
    review: int = 0
    failed: int = 0
    skipped: int = 0

    def add(self, outcome: FileOutcome) -> None:
        setattr(self, outcome.kind, getattr(self, outcome.kind) + 1)


Progress = Callable[[int, int, Path, str], None]  # (done, total, path, what happened)


def fix(paths: list[Path], outdir: Path, model: ModelSource, *, model_cfg: ModelConfig,
        limits: LimitsConfig, output: OutputConfig, ignore_patterns: tuple[str, ...],
        progress: Progress | None = None) -> FixSummary:
    """Write an upright copy of every image under ``outdir`` (same relative names); uncertain
    ones are copied unchanged to ``outdir/review``; bad images are counted as failed and
    logged, non-images are skipped and counted. A name already holding another file is kept:
    the new one gets a number; one already holding the same output is left as it is (running
    fix again writes nothing new). Inputs are never modified. Raises OutputInsideInput before
    anything is read or written when ``outdir`` overlaps an input folder, ModelError if the
    model cannot load."""
    check_output_outside(paths, outdir)
    files = list(expand(paths, ignore_patterns))
    summary = FixSummary()
    threshold = functools.cache(lambda: review_threshold(model_cfg))

    def decision_of(path: Path) -> Judged:
        # not verified here: the writer's own decode (jpegtran, the re-encode) is the check
        assessment, info = _judge(path, model, threshold, limits, verify=False)
        return Judged(assessment.decision, info)

    jpegtran = find_jpegtran() or ""  # looked up once per run, not once per photo
    for done, (path, relative) in enumerate(files, start=1):
        outcome = fix_file(path, relative, outdir, decision_of, limits=limits, output=output,
                           jpegtran=jpegtran)
        summary.add(outcome)
        if progress is not None:
            progress(done, len(files), path, outcome.message)
    return summary


def fix_file(path: Path, relative: Path, outdir: Path,
             decision_of: Callable[[Path], Decision | Judged], *, limits: LimitsConfig,
             output: OutputConfig, jpegtran: str | None = None) -> FileOutcome:
    """Carry out ``decision_of(path)`` for one file of ``fix``: the upright copy at
    ``outdir/relative``, a review copy under ``outdir/review``, a non-image skipped, a bad
    image failed (and logged). A :class:`Judged` answer hands the writer what was read (a JPEG
    is then not read again, and one not decoded yet is checked by the writer's decode).
    ``jpegtran``: the binary for lossless JPEG turns, as write_corrected takes it (None: found
    for this file; "": none).
    Never raises for a bad file or a failed write (both give ``failed``); ModelError from
    ``decision_of`` propagates."""
    try:
        judged = decision_of(path)
        decision, info = ((judged.decision, judged.info) if isinstance(judged, Judged)
                          else (judged, None))
        if decision.action == "quarantine":
            if _not_meant_as_image(path, decision.reason):
                return FileOutcome("skipped", "skipped (not an image)", decision=decision)
            raise ImageProblem("bad", decision.reason)
        if decision.action == "review":
            placed = copy_into(path, outdir / "review", relative)
            if placed.reused:
                return FileOutcome("unchanged", f"review copy already there: {placed.path}",
                                   placed.path, decision)
            return FileOutcome("review", f"review ({decision.reason}) -> {placed.path}",
                               placed.path, decision)
        result = write_corrected(path, outdir / relative, orientation=decision.orientation,
                                 mode=output.mode, max_pixels=limits.max_pixels,
                                 within=outdir, jpeg=info.jpeg if info is not None else None,
                                 verified=info is None or info.verified, jpegtran=jpegtran)
        if result.reused:
            return FileOutcome("unchanged", f"already there: {result.path}", result.path,
                               decision)
        return FileOutcome("written", f"{decision.action} {decision.correction} -> {result.path}",
                           result.path, decision)
    except UnsupportedFormat as exc:
        target = copy_into(path, outdir / "review", relative).path
        return FileOutcome("review", f"review (unsupported {exc.format}) -> {target}", target,
                           Decision("review", f"unsupported format {exc.format}"))
    except (ImageProblem, OSError) as exc:
        log.error("%s: %s", path, exc)
        return FileOutcome("failed", f"FAILED {exc}")


def _not_meant_as_image(path: Path, problem: str) -> bool:
    """Empty or without an image signature, under a name that does not promise a picture."""
    return problem.startswith(("not-an-image:", "empty:")) and not named_as_image(path)
