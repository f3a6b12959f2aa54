"""``rotwatchd`` command line: parse arguments, build objects, call the library.

Every failure becomes one clear line on stderr and an exit code: 0 ok, 1 a problem with a file
or the model, 2 bad configuration or usage, 3 (``status``) the daemon is not running, 141 the
reader of the output went away (``rotwatchd status | head``), silently.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Never

from rotwatchd import __version__
from rotwatchd.config import (
    Config,
    ConfigError,
    LimitsConfig,
    ModelConfig,
    OutputConfig,
    default_config,
    load_config,
    load_state_dir,
)
from rotwatchd.config.schema import DEFAULT_IGNORE, describe
from rotwatchd.service.status import one_line

if TYPE_CHECKING:
    from rotwatchd.model.base import ModelError, OrientationClassifier
    from rotwatchd.service.classifier_pool import ClassifierPool
    from rotwatchd.service.daemon import Daemon, Page

DEFAULT_CONFIG = Path("rotwatchd.yaml")
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a writer its reader left


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotwatchd", description="Watch folders and write upright copies of rotated photos.")
    parser.add_argument("--version", action="version", version=f"rotwatchd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground (logs to stderr)")
    _config_args(run)
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))

    check = sub.add_parser("check", help="say what rotwatchd would do with images")
    check.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    check.add_argument("--json", action="store_true", help="one JSON object per line")
    check.add_argument("-c", "--config", type=Path, help="take model settings from CONFIG")

    fix = sub.add_parser("fix", help="write upright copies of files/folders (no daemon)")
    fix.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    fix.add_argument("-o", "--output", type=Path, metavar="OUTDIR", help="required")
    fix.add_argument("-c", "--config", type=Path, help="take model/output settings from CONFIG")
    fix.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local (this process) or ray (a Ray cluster, resumable: outcomes are "
                          "recorded in OUTDIR; needs rotwatchd[ray])")
    fix.add_argument("--address", metavar="ADDR",
                     help="--engine ray: the cluster's head (host:port; default RAY_ADDRESS, "
                          "else a new cluster on this machine)")
    fix.add_argument("--classifiers", type=int, metavar="N",
                     help="--engine ray: classifier actors (default: one per cluster CPU)")
    fix.add_argument("--status", type=Path, metavar="OUTDIR",
                     help="what the resumable record in OUTDIR says, also while a run goes on")
    fix.set_defaults(usage_error=fix.error)

    status = sub.add_parser("status", help="what the running daemon is doing")
    _config_args(status)
    status.add_argument("--json", action="store_true", help="print the raw status JSON")

    from rotwatchd.cli import adapt as adapt_cli
    from rotwatchd.cli import review as review_cli

    review_cli.add_parser(sub, _config_args)
    adapt_cli.add_parser(sub, _config_args)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_check = config_sub.add_parser("check", help="validate a config file")
    config_check.add_argument("file", type=Path, metavar="FILE")
    config_sub.add_parser("keys", help="list every key with its type, default and meaning")

    for name, what in (
            ("eval", "evaluate the model (arguments go to rotwatchd.evaluation.accuracy)"),
            ("bench", "benchmark the model (arguments go to rotwatchd.evaluation.speed)")):
        forward = sub.add_parser(name, help=what, add_help=False)
        forward.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path,
                        help="YAML config (default: ./rotwatchd.yaml if present, else built-in "
                             "defaults ./inbox -> ./outbox, state in ./state)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set workers=2 (repeatable)")


def _load(path: Path | None, overrides: list[str]) -> Config:
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    if path is None:
        return default_config(Path.cwd(), overrides)
    return load_config(path, overrides)


class OneLineFormatter(logging.Formatter):
    """Every log record stays one line: control characters in its message (a file named
    ``a\\nb.jpg``, a carriage return) are escaped, so a file name can neither split a line nor
    forge one. A traceback still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = one_line(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _page_for(daemon: Daemon) -> Page | None:
    """The web layer's page for ``daemon``, imported only when ``web.listen`` asks for it (the
    daemon calls this then): ~2.3 MiB a daemon without the page never spends."""
    from rotwatchd.web.page import page_for

    return page_for(daemon)


def _cmd_run(args: argparse.Namespace) -> int:
    from rotwatchd.adapt.runtime import AdaptRuntime
    from rotwatchd.power.runtime import PowerRuntime
    from rotwatchd.service.daemon import (  # heavy imports only for the commands needing them
        AlreadyRunning,
        Daemon,
    )
    from rotwatchd.service.supervision import SystemdSupervision

    def reload_config() -> Config:
        return _load(args.config, args.set)

    config = reload_config()
    _setup_logging(args.log_level or config.log_level)
    try:
        daemon = Daemon(config, page=_page_for)
    except AlreadyRunning as exc:
        print(f"rotwatchd: {exc}", file=sys.stderr)
        return EXIT_FAIL
    # Supervision first: its READY=1/STOPPING=1 go out before the power threads start/stop.
    supervision = SystemdSupervision.attach(daemon)
    power = PowerRuntime.attach(daemon)
    power.sleep.add_listener(lambda state: supervision.send_status())
    adapt = AdaptRuntime.attach(daemon, power.sleep)
    try:
        daemon.serve_forever(reload_config)  # SIGTERM/SIGINT: stop; SIGHUP: reload
    finally:
        power.close()  # normally done at on_stopping; this covers a failed start
        adapt.close()
    return EXIT_OK


def _tool_settings(path: Path | None) -> tuple[ModelConfig, LimitsConfig, OutputConfig,
                                               tuple[str, ...]]:
    if path is None:
        return ModelConfig(), LimitsConfig(), OutputConfig(), DEFAULT_IGNORE
    cfg = load_config(path)
    return cfg.model, cfg.limits, cfg.output, cfg.watch.ignore_patterns


def _classifier_pool(model_cfg: ModelConfig) -> ClassifierPool:
    from rotwatchd.service.classifier_pool import ClassifierPool

    def load() -> OrientationClassifier:
        from rotwatchd.service.daemon import load_configured_classifier

        return load_configured_classifier(model_cfg)

    # loaded (and the model package imported) on the first image that needs it: a run whose
    # images are all decided by their tags never does
    return ClassifierPool(load)


def _model_error() -> type[ModelError]:
    """ModelError, for an ``except`` clause: imported only when an exception is being matched
    (the model package pulls in numpy; only a command that used it can have raised one)."""
    from rotwatchd.model.base import ModelError

    return ModelError


def _failures() -> tuple[type[Exception], ...]:
    """OSError, and sqlite3.Error once sqlite3 is imported (for an ``except`` clause: only a
    command that used the journal can have raised one, and ``fix``/``check`` never import it)."""
    sqlite3 = sys.modules.get("sqlite3")
    return (OSError,) if sqlite3 is None else (OSError, sqlite3.Error)


def _cmd_check(args: argparse.Namespace) -> int:
    from rotwatchd.fix.oneshot import assess
    from rotwatchd.service.processor import review_threshold

    model_cfg, limits, _, _ = _tool_settings(args.config)
    slot = _classifier_pool(model_cfg)
    threshold = functools.cache(lambda: review_threshold(model_cfg))
    status = EXIT_OK
    for image in args.images:
        assessment = assess(image, slot, threshold, limits)
        if assessment.problem is not None:
            status = EXIT_FAIL
        print(json.dumps(assessment.as_json()) if args.json else assessment.as_line(),
              flush=True)
    return status


def _progress_printer() -> tuple[Callable[[int, int, Path, str], None],
                                 contextlib.AbstractContextManager[object]]:
    """``fix`` progress on stderr, and the context to run ``fix`` in: on a terminal a tqdm bar
    (log lines, e.g. a failed image, are printed above it), else one line per file
    (``done/total path: what happened``) for logs."""
    if not sys.stderr.isatty():
        def line(done: int, total: int, path: Path, what: str) -> None:
            print(f"{done}/{total} {path}: {what}", file=sys.stderr, flush=True)

        return line, contextlib.nullcontext()
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bars: list[tqdm[Never]] = []

    def show(done: int, total: int, path: Path, what: str) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True))
        bars[0].set_postfix_str(path.name[:40], refresh=False)
        bars[0].update(done - bars[0].n)

    @contextlib.contextmanager
    def running() -> Iterator[object]:
        with logging_redirect_tqdm():
            try:
                yield None
            finally:
                for bar in bars:
                    bar.close()

    return show, running()


def _cmd_fix(args: argparse.Namespace) -> int:
    from rotwatchd.fix.oneshot import OutputInsideInput, fix

    if args.status is not None:
        return _fix_status(args.status)
    if not args.paths or args.output is None:
        args.usage_error("PATH... and -o/--output OUTDIR are required (or --status OUTDIR)")
    if args.classifiers is not None and args.classifiers < 1:
        args.usage_error("--classifiers must be at least 1")
    if args.engine == "ray":
        return _cmd_fix_ray(args)
    if args.address is not None or args.classifiers is not None:
        args.usage_error("--address and --classifiers go with --engine ray")
    _setup_logging("warning")
    model_cfg, limits, output, ignore = _tool_settings(args.config)
    slot = _classifier_pool(model_cfg)
    progress, showing = _progress_printer()
    try:
        with showing:
            summary = fix(args.paths, args.output, slot, model_cfg=model_cfg,
                          limits=limits, output=output, ignore_patterns=ignore,
                          progress=progress)
    except OutputInsideInput as exc:
        print(f"rotwatchd: fix: {exc}", file=sys.stderr)
        return EXIT_USAGE
    again = f", {summary.unchanged} already there (nothing written)" if summary.unchanged else ""
    print(f"{summary.written} written, {summary.review} to review, {summary.failed} failed, "
          f"{summary.skipped} skipped (not images){again}", file=sys.stderr)
    return EXIT_FAIL if summary.failed else EXIT_OK


def _cmd_fix_ray(args: argparse.Namespace) -> int:
    """``fix --engine ray``: rotwatchd.fix.ray_engine imports Ray itself, only now."""
    from rotwatchd.fix import ray_engine as ray_fix
    from rotwatchd.fix.oneshot import OutputInsideInput
    from rotwatchd.fix.record import FixRunning

    _setup_logging("warning")
    model_cfg, limits, output, ignore = _tool_settings(args.config)
    bars = sys.stderr.isatty()  # Ray Data's bars on a terminal, else a line now and then

    def show(summary: ray_fix.RayFixSummary) -> None:
        print(ray_fix.progress_line(summary), file=sys.stderr, flush=True)

    try:
        summary = ray_fix.fix_on_ray(
            args.paths, args.output, model_cfg=model_cfg, limits=limits, output=output,
            ignore_patterns=ignore, address=args.address, classifiers=args.classifiers,
            progress=None if bars else show, progress_bars=bars)
    except (OutputInsideInput, FixRunning) as exc:
        print(f"rotwatchd: fix: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ray_fix.RayMissing, ray_fix.RayFixError) as exc:
        print(f"rotwatchd: fix: {exc}", file=sys.stderr)
        return EXIT_FAIL
    for line in ray_fix.format_summary(summary):
        print(line, file=sys.stderr)
    return EXIT_FAIL if summary.failed else EXIT_OK


def _fix_status(outdir: Path) -> int:
    from rotwatchd.fix.record import format_status, status_document

    try:
        document = status_document(outdir)
    except FileNotFoundError:
        print(f"rotwatchd: fix: no fix record in {outdir} (only --engine ray keeps one)",
              file=sys.stderr)
        return EXIT_FAIL
    print(format_status(document))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from rotwatchd.service.journal import JOURNAL_NAME, Journal
    from rotwatchd.service.status import format_status, read_status

    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    state_dir = load_state_dir(path, args.set) if path else Path("state").absolute()
    if (state_dir / JOURNAL_NAME).is_file():
        Journal(state_dir).close()  # a read-only journal: one line naming it, exit 1
    document = read_status(state_dir)
    if document is None:
        if not (state_dir / JOURNAL_NAME).is_file():
            print(f"rotwatchd has never run with state in {state_dir}", file=sys.stderr)
            return EXIT_NOT_RUNNING
        with Journal(state_dir) as journal:
            document = {"running": False, "counts": journal.counts()}
    print(json.dumps(document, indent=1, sort_keys=True) if args.json
          else format_status(document))
    return EXIT_OK if document.get("running") else EXIT_NOT_RUNNING


def _cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "keys":
        print("\n".join(describe()))
        return EXIT_OK
    load_config(args.file)
    print(f"{args.file}: OK")
    return EXIT_OK


def _ran_here(args: argparse.Namespace) -> bool:
    """For commands about a daemon's state: False, after one line, when no config file is
    given or found and ``./state`` holds no journal (the built-in defaults would otherwise
    create ./inbox, ./outbox and ./state in whatever folder the command was typed in)."""
    from rotwatchd.service.journal import JOURNAL_NAME

    if args.config is not None or DEFAULT_CONFIG.is_file():
        return True
    state_dir = Path("state").absolute()
    if (state_dir / JOURNAL_NAME).is_file():
        return True
    print(f"rotwatchd has never run with state in {state_dir} (no {DEFAULT_CONFIG} here; "
          "give the daemon's config with -c)", file=sys.stderr)
    return False


def _cmd_review(args: argparse.Namespace) -> int:
    from rotwatchd.cli import review as review_cli

    if not _ran_here(args):
        return EXIT_NOT_RUNNING
    return review_cli.run(args, _load(args.config, args.set))


def _cmd_adapt(args: argparse.Namespace) -> int:
    from rotwatchd.cli import adapt as adapt_cli

    if not _ran_here(args):
        return EXIT_NOT_RUNNING
    return adapt_cli.run(args, _load(args.config, args.set))


def _forward(command: str, argv: list[str]) -> int:
    """``eval``/``bench`` belong to the model tools; imported lazily (they pull in more)."""
    name = "rotwatchd.evaluation.accuracy" if command == "eval" else "rotwatchd.evaluation.speed"
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        print(f"rotwatchd: {command} is not available: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return int(module.main(argv))


def main(argv: list[str] | None = None) -> int:
    """Run the ``rotwatchd`` command line with ``argv`` (default: sys.argv[1:]); returns the
    exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("eval", "bench"):  # everything after goes to the model's tools
        return _forward(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _cmd_run, "check": _cmd_check, "fix": _cmd_fix, "status": _cmd_status,
        "config": _cmd_config, "review": _cmd_review, "adapt": _cmd_adapt,
    }
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except _model_error() as exc:
        print(f"rotwatchd: model: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BrokenPipeError:  # `rotwatchd status | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_BROKEN_PIPE
    except _failures() as exc:
        print(f"rotwatchd: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
