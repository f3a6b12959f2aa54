"""``rotwatchd review``: list the images waiting for a person, settle them, export the labels.

Works on the journal in ``state_dir`` directly, whether or not the daemon runs (settling is
serialised with the daemon's web page by rotwatchd.service.review's lock file).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rotwatchd.config import Config
from rotwatchd.service.decision import ORIENTATION_FOR_CORRECTION, confidence_text
from rotwatchd.service.status import one_line

if TYPE_CHECKING:  # imported by run(): building the command line (every command) never needs
    # the journal (sqlite3) nor the writer
    from rotwatchd.service.review import ReviewItem

EXIT_OK, EXIT_FAIL = 0, 1


def add_parser(sub: Any, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``review`` and its actions to the ``rotwatchd`` subparsers ``sub``."""
    review = sub.add_parser("review", help="images waiting for a person: list, settle, export")
    actions = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one row per waiting image: id, guess, path")
    listing.add_argument("--json", action="store_true", help="a JSON array of the items")
    apply = actions.add_parser("apply", help="turn an item by CORRECTION degrees clockwise "
                                             "and write its upright copy")
    apply.add_argument("id", type=int, metavar="ID")
    apply.add_argument("correction", type=int, choices=tuple(ORIENTATION_FOR_CORRECTION),
                       metavar="CORRECTION",
                       help="0, 90, 180 or 270 (clockwise degrees that make it upright)")
    keep = actions.add_parser("keep", help="the item is upright as it is: copy it unchanged")
    keep.add_argument("id", type=int, metavar="ID")
    export = actions.add_parser("export", help="every answer given, with the file's hash and "
                                               "the model's guess (CSV, or --json)")
    export.add_argument("--json", action="store_true", help="a JSON array instead of CSV")
    for parser in (listing, apply, keep, export):
        config_args(parser)


def run(args: argparse.Namespace, config: Config) -> int:
    """Carry out ``rotwatchd review ACTION``; returns the exit status."""
    from rotwatchd.service.journal import Journal
    from rotwatchd.service.review import AlreadySettled, CannotSettle, ReviewQueue, UnknownItem

    with Journal(config.state_dir) as journal:
        queue = ReviewQueue(config, journal)
        if args.review_command == "list":
            _print_items(queue.waiting(), args.json)
            return EXIT_OK
        if args.review_command == "export":
            _export(queue.labels(), args.json)
            return EXIT_OK
        correction = 0 if args.review_command == "keep" else args.correction
        try:
            settled = queue.settle(args.id, correction)
        except (UnknownItem, AlreadySettled, CannotSettle) as exc:
            print(f"rotwatchd: review: {exc}", file=sys.stderr)
            return EXIT_FAIL
    print(one_line(f"{settled.item.id}: {settled.item.path} -> {settled.output} "
                   f"({correction} deg, {settled.note})"))
    return EXIT_OK


def _guess(item: ReviewItem) -> str:
    if item.guess is None:
        return "-"
    return f"{item.guess}"


def _print_items(items: list[ReviewItem], as_json: bool) -> None:
    if as_json:
        print(json.dumps([dataclasses.asdict(item) for item in items], indent=1))
        return
    if not items:
        print("nothing waiting for review")
        return
    print(f"{'id':>5}  {'guess':>5}  {'conf':>5}  {'waiting':>8}  path")
    now = time.time()
    for item in items:
        confidence = "-" if item.confidence is None else confidence_text(item.confidence)
        print(f"{item.id:>5}  {_guess(item):>5}  {confidence:>5}  "
              f"{_age(now - item.arrived_at):>8}  {one_line(item.path)}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


_EXPORT_FIELDS = ("sha256", "path", "guess", "confidence", "p0", "p90", "p180", "p270",
                  "answer", "arrived_at", "settled_at", "output")


def _export(labels: list[ReviewItem], as_json: bool) -> None:
    rows = []
    for item in labels:
        probs = item.probabilities or (None, None, None, None)
        rows.append({"sha256": item.sha256, "path": item.path, "guess": item.guess,
                     "confidence": item.confidence, "p0": probs[0], "p90": probs[1],
                     "p180": probs[2], "p270": probs[3], "answer": item.answer,
                     "arrived_at": item.arrived_at, "settled_at": item.settled_at,
                     "output": item.output})
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=_EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
