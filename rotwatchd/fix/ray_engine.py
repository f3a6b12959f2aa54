"""``rotwatchd fix --engine ray``: the local ``fix`` as a Ray Data pipeline, for backlogs
larger than one machine.

list files (here, the driver) -> read, hash, inspect, decode at model size -> classify (an
actor pool, one classifier per actor, loaded once; Ray Data fuses the reading into these
actors) -> decide and write (tasks) -> record (here). The stages run rotwatchd.fix.oneshot's own
steps (see rotwatchd.fix.ray_stages), so every decision, every output byte and every name is what
the local ``fix`` makes. Inputs and OUTDIR must be on storage every node sees under the same
path. Names that two files could both take are done here, one after another, in input order.

Resumable: each outcome is recorded under OUTDIR (rotwatchd.fix.record) as it arrives; a run
started again skips what the record settles, and whatever a killed run wrote but did not
record is found in place by the writer (same bytes: reused, nothing written twice).

Ray is imported only here, and only when this engine is asked for.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from rotwatchd.config import LimitsConfig, ModelConfig, OutputConfig
from rotwatchd.fix.oneshot import assess, check_output_outside, expand, fix_file
from rotwatchd.fix.record import OUTCOME_LABELS, FileRecord, FixRecord, RunLock
from rotwatchd.model.base import ModelError
from rotwatchd.output.atomic import remove_temporaries
from rotwatchd.service.processor import review_threshold

log = logging.getLogger(__name__)

#: Ray CPUs each stage asks for: a classifier and a reading or writing task fit together on
#: one CPU, so a node offering one CPU runs the whole pipeline.
STAGE_CPUS = 0.5
LOOK_BATCH, CLASSIFY_BATCH, WRITE_BATCH = 4, 8, 4
#: A classifier actor that dies (its node lost, a native crash) is started again this many
#: times, then the run stops (and can be resumed): an image that crashes the interpreter
#: must not loop forever.
ACTOR_RESTARTS = 3
#: Files per record commit (and per progress step) on the driver.
RECORD_BATCH = 8


class RayMissing(Exception):
    """Ray (the ``rotwatchd[ray]`` extra) is not installed."""


class RayFixError(Exception):
    """The cluster could not run the pipeline; ``str(exc)`` says why in one line."""


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data loaded. Raises RayMissing."""
    try:
        import ray
        import ray.data  # noqa: F401 - the pipeline needs it on the driver
    except ImportError as exc:
        raise RayMissing(f"--engine ray needs Ray ({exc}): install rotwatchd[ray]") from None
    module: ModuleType = ray  # typed whether or not Ray's own annotations are installed
    return module


@dataclass
class RayFixSummary:
    """What a run did: ``counts`` by outcome (rotwatchd.fix.record.OUTCOME_LABELS) for the
    files it handled, ``settled_before`` files an earlier run had recorded (not touched),
    ``files`` in the inputs; ``seconds`` in all, of which ``start_seconds`` to connect to
    the cluster; ``classifiers`` actors used."""

    files: int = 0
    settled_before: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    start_seconds: float = 0.0
    classifiers: int = 0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.counts["failed"]


#: Called with the summary so far (``done`` of ``files - settled_before``).
RayProgress = Callable[[RayFixSummary], None]


def colliding(files: list[tuple[Path, Path]]) -> set[Path]:
    """Files whose upright or review copy could take the name another file's copy takes
    (the same relative name under two inputs; ``review/x.jpg`` beside an uncertain ``x.jpg``).
    Such names are numbered in input order, so those files are done one after another."""
    def names(relative: Path) -> tuple[str, str]:
        return relative.as_posix(), (Path("review") / relative).as_posix()

    taken = Counter(name for _, relative in files for name in names(relative))
    return {path for path, relative in files if any(taken[n] > 1 for n in names(relative))}


def fix_on_ray(paths: list[Path], outdir: Path, *, model_cfg: ModelConfig,
               limits: LimitsConfig, output: OutputConfig, ignore_patterns: tuple[str, ...],
               address: str | None = None, classifiers: int | None = None,
               progress: RayProgress | None = None, progress_bars: bool = False) -> RayFixSummary:
    """Run ``fix`` on a Ray cluster (``address``; None: RAY_ADDRESS, else a new one on this
    machine) with ``classifiers`` classifier actors (None: one per CPU of the cluster),
    recording each outcome under ``outdir``. Raises RayMissing, OutputInsideInput (before
    anything is read or written), FixRunning (another fix holds ``outdir``), RayFixError,
    ModelError, sqlite3.Error."""
    ray = import_ray()
    check_output_outside(paths, outdir)
    if model_cfg.path is not None and not model_cfg.path.is_file():  # before any worker fails
        raise ModelError(f"orientation model not found: {model_cfg.path}")
    began = time.monotonic()
    outdir = outdir.absolute()
    outdir.mkdir(parents=True, exist_ok=True)
    with RunLock(outdir), FixRecord(outdir) as record:
        files = [(path.absolute(), relative) for path, relative in expand(paths, ignore_patterns)]
        todo = record.left_to_do(files)
        last = record.last_run()
        if last is not None and last["finished"] is None:  # a killed run's temporary files
            remove_temporaries(outdir)
        summary = RayFixSummary(files=len(files), settled_before=len(files) - len(todo))
        record.begin_run("ray", len(files), len(todo))
        apart = colliding(files)
        shared = [item for item in todo if item[0] not in apart]
        if shared:
            _run_pipeline(ray, shared, outdir, record, summary, model_cfg=model_cfg,
                          limits=limits, output=output, address=address,
                          classifiers=classifiers, progress=progress,
                          progress_bars=progress_bars)
        one_by_one = [item for item in todo if item[0] in apart]
        if one_by_one:
            _fix_here(one_by_one, outdir, record, summary, model_cfg, limits, output, progress)
        record.end_run()
    summary.seconds = time.monotonic() - began
    if progress is not None:
        progress(summary)
    return summary


def _run_pipeline(ray: ModuleType, todo: list[tuple[Path, Path]], outdir: Path,
                  record: FixRecord, summary: RayFixSummary, *, model_cfg: ModelConfig,
                  limits: LimitsConfig, output: OutputConfig, address: str | None,
                  classifiers: int | None, progress: RayProgress | None,
                  progress_bars: bool) -> None:
    from rotwatchd.fix import ray_stages

    connect = time.monotonic()
    _connect(ray, address)
    try:
        summary.start_seconds = time.monotonic() - connect
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress_bars
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
        cpus = float(ray.cluster_resources().get("CPU", 1))
        summary.classifiers = classifiers or max(1, int(cpus))
        items = [{"source": str(path), "relative": relative.as_posix()}
                 for path, relative in todo]
        blocks = max(1, min(math.ceil(len(items) / LOOK_BATCH), 10_000))
        dataset = (
            ray.data.from_items(items, override_num_blocks=blocks)
            .map_batches(ray_stages.look_batch, batch_size=LOOK_BATCH, batch_format="numpy",
                         fn_kwargs={"limits": limits}, num_cpus=STAGE_CPUS)
            .map_batches(ray_stages.ClassifyBatch, batch_size=CLASSIFY_BATCH,
                         batch_format="numpy", fn_constructor_kwargs={"model": model_cfg},
                         compute=ray.data.ActorPoolStrategy(size=summary.classifiers),
                         num_cpus=STAGE_CPUS, max_restarts=ACTOR_RESTARTS,
                         max_task_retries=ACTOR_RESTARTS)
            .map_batches(ray_stages.write_batch, batch_size=WRITE_BATCH, batch_format="numpy",
                         fn_kwargs={"outdir": str(outdir),
                                    "min_confidence": review_threshold(model_cfg),
                                    "limits": limits, "output": output},
                         num_cpus=STAGE_CPUS))
        interval = _Interval(progress)
        for batch in dataset.iter_batches(batch_size=RECORD_BATCH, batch_format="numpy",
                                          prefetch_batches=0):
            rows = _records(batch)
            record.add(rows)
            for row in rows:
                summary.counts[row.outcome] += 1
                if row.outcome == "failed":
                    log.error("%s: %s", row.source, row.message.removeprefix("FAILED "))
            interval.tick(summary)
    except ray.exceptions.RayError as exc:
        raise RayFixError(_one_line(exc)) from None
    finally:
        ray.shutdown()


class _QuietRayData(logging.Filter):
    """Drops Ray Data's informational lines and its note that progress bars are off (we print
    our own progress then); its warnings and errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and "Progress bars disabled" not in (
            record.getMessage())


def _connect(ray: ModuleType, address: str | None) -> None:
    address = address or os.environ.get("RAY_ADDRESS") or None
    for handler in logging.getLogger("ray.data").handlers:
        handler.addFilter(_QuietRayData())
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                               "configure_logging": True}
    if address is None:
        options.update(address="local", include_dashboard=False)
    else:
        _reachable(address)
        options.update(address=address)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayFixError(f"cannot connect to the Ray cluster at {address}: "
                          f"{_one_line(exc)}") from None


def _reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing listens at a ``host:port`` address: Ray itself keeps retrying
    for minutes. Other forms (``auto``, ``ray://...``) are left to Ray."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or "/" in host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayFixError(f"cannot reach the Ray cluster at {address}: "
                          f"{exc.strerror or exc}") from None


def _one_line(exc: BaseException) -> str:
    """The last meaningful line of a (possibly remote, multi-line) error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _records(batch: dict[str, Any]) -> list[FileRecord]:
    rows = []
    for i in range(len(batch["source"])):
        correction = int(batch["correction"][i])
        confidence = float(batch["confidence"][i])
        rows.append(FileRecord(
            source=str(batch["source"][i]), relative=str(batch["relative"][i]),
            size=int(batch["size"][i]), mtime_ns=int(batch["mtime_ns"][i]),
            sha256=str(batch["sha256"][i]), outcome=str(batch["outcome"][i]),
            message=str(batch["message"][i]), output=str(batch["output"][i]) or None,
            action=str(batch["action"][i]) or None,
            correction=None if correction < 0 else correction,
            confidence=None if math.isnan(confidence) else confidence,
            decided_by=str(batch["decided_by"][i]) or None))
    return rows


def _fix_here(files: list[tuple[Path, Path]], outdir: Path, record: FixRecord,
              summary: RayFixSummary, model_cfg: ModelConfig, limits: LimitsConfig,
              output: OutputConfig, progress: RayProgress | None) -> None:
    """Files whose names collide, on this process in input order, as the local fix does."""
    from rotwatchd.fix.ray_stages import file_stat
    from rotwatchd.service.classifier_pool import ClassifierPool
    from rotwatchd.service.daemon import load_configured_classifier

    pool = ClassifierPool(lambda: load_configured_classifier(model_cfg))
    threshold = review_threshold(model_cfg)
    interval = _Interval(progress)
    try:
        for path, relative in files:
            size, mtime_ns, sha256 = file_stat(path)
            done = fix_file(path, relative, outdir,
                            lambda p: assess(p, pool, threshold, limits).decision,
                            limits=limits, output=output)
            decision = done.decision
            record.add([FileRecord(
                str(path), relative.as_posix(), size, mtime_ns, sha256, done.kind,
                done.message, str(done.output) if done.output else None,
                decision.action if decision else None,
                decision.correction if decision else None,
                decision.confidence if decision else None,
                decision.source if decision else None)])
            summary.counts[done.kind] += 1
            interval.tick(summary)
    finally:
        pool.release()


class _Interval:
    """Calls ``progress`` at most once per ``seconds``."""

    def __init__(self, progress: RayProgress | None, seconds: float = 10.0) -> None:
        self.progress = progress
        self.seconds = seconds
        self.last = time.monotonic()

    def tick(self, summary: RayFixSummary) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self.last >= self.seconds:
            self.last = now
            self.progress(summary)


def format_summary(summary: RayFixSummary) -> list[str]:
    """The final table: this run's files by outcome, what earlier runs had settled, time."""
    from rotwatchd.fix.record import format_counts

    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    lines = ["outcome of this run:", *format_counts(dict(summary.counts))]
    if summary.settled_before:
        lines.append(f"  (and {summary.settled_before} of the {summary.files} files settled by "
                     "an earlier run, not touched)")
    lines.append(f"{summary.done} files in {summary.seconds:.1f}s ({rate:.1f}/s; "
                 f"{summary.start_seconds:.1f}s to reach the cluster), "
                 f"{summary.classifiers} classifier(s)")
    return lines


def progress_line(summary: RayFixSummary) -> str:
    """One line for the interval progress: done of left, counts so far."""
    left = summary.files - summary.settled_before
    counts = ", ".join(f"{summary.counts[kind]} {OUTCOME_LABELS[kind].split(' (')[0]}"
                       for kind in OUTCOME_LABELS if summary.counts[kind])
    return f"fix: {summary.done}/{left} files" + (f" ({counts})" if counts else "")
