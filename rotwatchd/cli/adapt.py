"""``rotwatchd adapt``: learn from your own photos now, or forget everything learned.

Works on ``state_dir`` directly, whether or not the daemon runs: collects the features of every
exactly labelled file not collected yet (EXIF-decided photos and review answers; ~0.1 s each),
fits the personal head, and prints the guardrail's figures before and after. A running daemon
picks an accepted head up at its next wake-up. ``--forget`` deletes every label and the
personal head.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from rotwatchd.config import Config

EXIT_OK, EXIT_FAIL = 0, 1


def add_parser(sub: Any, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``adapt`` to the ``rotwatchd`` subparsers ``sub``."""
    adapt = sub.add_parser("adapt", help="learn a personal head from your labelled photos now "
                                         "(or --forget them)")
    adapt.add_argument("--forget", action="store_true",
                       help="delete every collected label and the personal head")
    adapt.add_argument("--json", action="store_true", help="print the figures as JSON")
    config_args(adapt)


def run(args: argparse.Namespace, config: Config) -> int:
    """Carry out ``rotwatchd adapt``; returns the exit status."""
    from rotwatchd.adapt.runtime import (
        HEAD_NAME,
        Adapter,
        adapt_dir,
        label_folders,
        sidecar_mismatch,
        unused_with,
    )
    from rotwatchd.model.personal import read_personal
    from rotwatchd.service.journal import Journal  # here: building the command line never needs it

    with Journal(config.state_dir) as journal:
        adapter = Adapter(config.state_dir, journal, config.adapt, config.model,
                          max_pixels=config.limits.max_pixels, folders=label_folders(config))
        try:
            if args.forget:
                had_head = (adapter.folder / HEAD_NAME).is_file()
                deleted = adapter.forget()
                head = " and the personal head" if had_head else " (there was no personal head)"
                print(f"forgot {deleted} label(s){head}; photos handled before now will not be "
                      "collected again")
                return EXIT_OK
            collected = 0
            while adapter.pending(1):
                collected += adapter.collect(200)
            digest = adapter.model_digest()
            counts = adapter.store.counts(digest)
            old_labels = 0 if digest is None else adapter.store.stale_count(digest)
            result = adapter.fit()
        finally:
            adapter.close()
    figures = {"collected": collected, "labels": counts, "fit_cpu_s": round(result.seconds, 2),
               "fitted": result.head is not None, **result.verdict.figures()}
    if old_labels:
        figures["labels_earlier_network"] = old_labels
    # a rejected fit leaves a head accepted earlier where it was: say so, or exit 1 reads as
    # "no personal head"
    earlier = not result.verdict.accepted and (adapt_dir(config.state_dir) / HEAD_NAME).is_file()
    if earlier:
        figures["earlier_head_kept"] = True
    why = unused_with(config.model)
    if why is None and earlier:  # kept, but fitted for another calibration of the sidecar
        kept = read_personal(adapt_dir(config.state_dir) / HEAD_NAME)
        why = sidecar_mismatch(kept, config.model) if kept is not None else None
    if why is not None and (result.verdict.accepted or earlier):
        figures["not_used"] = why  # the daemon will not run it with these settings
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print(_report(figures))
    return EXIT_OK if result.verdict.accepted else EXIT_FAIL


def _earlier(f: dict[str, Any]) -> str:
    n = f.get("labels_earlier_network")
    return f"; {n} more of an earlier scene network, not used" if n else ""


def _report(f: dict[str, Any]) -> str:
    labels = f["labels"]
    fit = (f"trained on {f['labels_trained']}, judged on {f['labels_held_out']} held out "
           f"(x 4 turns); fit {f['fit_cpu_s']} s CPU" if f.get("fitted") else "no fit")
    lines = [f"labels: {labels['exif']} from EXIF, {labels['human']} from review answers "
             f"({f['collected']} collected now{_earlier(f)}); {fit}"]
    for name in ("shipped", "personal"):
        if name in f:
            o = f[name]
            lines.append(f"  {name + ' head':14s} decided correctly {o['decided_correct']:6.1%}"
                         f"  wrong among decided {o['wrong_among_decided']:5.1%}"
                         f"  at threshold {o['threshold']:g}")
    lines.append("personal head " + f["reason"])
    if f.get("earlier_head_kept"):
        lines.append("the personal head fitted before stays where it was (`rotwatchd status` "
                     "says whether it decides); `rotwatchd adapt --forget` removes it")
    if f.get("not_used"):
        lines.append(f"but the daemon does not use it with this config ({f['not_used']}): "
                     "the shipped head decides")
    return "\n".join(lines)


