"""Sampled mutation testing of rotwatchd's core, with cosmic-ray (the ``dev`` extra).

For each module below: make one small change at a time (a comparison flipped or moved by one,
a constant moved by one, a condition negated, ``and``/``or`` swapped, an arithmetic operator
swapped, a loop run zero times, an ``except`` that never matches, a statement dropped), run
only the tests that reach that module, and count the changes the tests notice ("caught").
Changes that cannot change behaviour are listed, with the reason, in
``bench/mutation_no_effect.toml`` (by module, operator, enclosing function or class or "*"
for any, and the line before and after); the score leaves them out.

Usage:  .venv/bin/python bench/mutation.py [--sample 25] [--seed 1] [module ...]
        (modules as in the table, e.g. ``filing`` or ``power/policy``; default all)
Not a test and not part of CI: under half an hour for all modules on two busy cores. It edits the
module files in place while it runs (cosmic-ray puts each one back after its test run) and
refuses to start on a module with uncommitted changes. Writes ``runs/mutation/`` (one
cosmic-ray session per module, and the surviving changes with their diffs).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import parso  # noqa: F401  (before cosmic_ray.plugins: it imports parso.tree in a cycle)
import parso.python.tree
from cosmic_ray.commands import execute, init
from cosmic_ray.config import ConfigDict
from cosmic_ray.operators.operator import Example, Operator
from cosmic_ray.plugins import OPERATOR_PROVIDERS
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import MutationSpec, TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "mutation"
NO_EFFECT = ROOT / "bench" / "mutation_no_effect.toml"

# The tests that reach each module, quickest and most pointed first (-x stops at the first
# failure): the tests written from earlier mutation runs (tests/unit/test_gaps_*.py), the module's
# own, then the daemon tests that go through it.
MODULES: dict[str, tuple[str, ...]] = {
    "service/decision": ("test_gaps_decision.py", "test_decision.py", "test_formats_cases.py",
                 "test_daemon.py"),
    "power/policy": ("test_gaps_power.py", "test_power_policy.py", "test_power_manager.py"),
    "watch/settle": ("test_gaps_settle.py", "test_watch.py", "test_safety_unfinished.py",
               "test_safety_retry.py"),
    "output/atomic": ("test_gaps_atomic.py", "test_gaps_filing.py", "test_gaps_recovery.py",
                      "test_writer_orientation.py", "test_safety_outputs.py",
                      "test_safety_crash.py", "test_safety_symlinks.py",
                      "test_daemon_outputs.py"),
    "service/journal": ("test_gaps_journal.py", "test_gaps_recovery.py", "test_journal.py",
                "test_safety_journal.py", "test_review.py", "test_safety_crash.py",
                "test_daemon.py"),
    "model/fusion": ("test_gaps_fusion.py", "test_model_fusion.py", "test_model_text.py"),
    "config/__init__": ("test_gaps_config.py", "test_config.py", "test_web_units.py", "test_cli.py",
               "test_safety_cli.py", "test_power_sleep.py"),
    "output/filing": ("test_gaps_filing.py", "test_gaps_journal.py", "test_safety_symlinks.py",
               "test_safety_crash.py", "test_safety_outputs.py"),
    "output/inboxfile": ("test_gaps_inboxfile.py", "test_gaps_filing.py", "test_safety_symlinks.py",
                  "test_safety_outputs.py"),
    "service/recovery": ("test_gaps_recovery.py", "test_safety_crash.py", "test_daemon.py"),
    "service/retry": ("test_gaps_retry.py", "test_safety_retry.py"),
    # the review queue, where the branch has it
    "service/review": ("test_gaps_review.py", "test_review.py", "test_review_cli.py"),
}

# Operators kept: the small changes a slip of the keyboard or of thought makes. The binary
# operators are limited to their natural partner (every operator to every other would swamp the
# sample with `|` in type hints and `**`).
_BINARY = {"Add": "Sub", "Sub": "Add", "Mul": "Div", "Div": "Mul", "FloorDiv": "Mul",
           "Mod": "FloorDiv"}
_COMPARISON = {("Eq", "NotEq"), ("NotEq", "Eq"), ("Lt", "LtE"), ("LtE", "Lt"), ("Gt", "GtE"),
               ("GtE", "Gt"), ("Lt", "GtE"), ("LtE", "Gt"), ("Gt", "LtE"), ("GtE", "Lt"),
               ("Is", "IsNot"), ("IsNot", "Is")}
OPERATORS = frozenset(
    [f"core/ReplaceBinaryOperator_{a}_{b}" for a, b in _BINARY.items()]
    + [f"core/ReplaceComparisonOperator_{a}_{b}" for a, b in _COMPARISON]
    + [f"core/{name}" for name in (
        "ReplaceUnaryOperator_Delete_Not", "ReplaceUnaryOperator_Delete_USub", "AddNot",
        "ReplaceTrueWithFalse", "ReplaceFalseWithTrue", "ReplaceAndWithOr", "ReplaceOrWithAnd",
        "ReplaceBreakWithContinue", "ReplaceContinueWithBreak", "ExceptionReplacer",
        "NumberReplacer", "ZeroIterationForLoop")]
    + ["rotwatchd/DropStatement"])


class DropStatement(Operator):
    """Replace one statement inside a function (not its docstring) with ``pass``."""

    def mutation_positions(self, node: parso.tree.NodeOrLeaf):  # type: ignore[no-untyped-def]
        if node.type != "simple_stmt" or not _in_function(node):
            return
        first = node.children[0]
        if first.type in ("keyword",) and first.value == "pass":
            return
        if first.type == "string" or (first.type == "atom" and first.get_code().strip()
                                      .startswith(('"', "'"))):
            return  # a docstring
        if first.type == "operator" and first.value == "...":
            return
        yield (node.start_pos, node.end_pos)

    def mutate(self, node, index):  # type: ignore[no-untyped-def]
        first = node.children[0]
        keyword = parso.python.tree.Keyword("pass", first.start_pos,
                                            first.get_first_leaf().prefix)
        node.children = [keyword, node.children[-1]]
        keyword.parent = node
        return node

    @classmethod
    def examples(cls):  # type: ignore[no-untyped-def]
        return (Example("def f():\n    x = 1\n", "def f():\n    pass\n"),)


def _kept(mutation: MutationSpec, tree: parso.python.tree.Module) -> bool:
    """One of OPERATORS, and a binary operator only where it is arithmetic (``*`` also marks
    keyword-only parameters, which cosmic-ray would "replace" too)."""
    if mutation.operator_name not in OPERATORS:
        return False
    if "BinaryOperator" not in mutation.operator_name:
        return True
    leaf = tree.get_leaf_for_position(tuple(mutation.start_pos))
    return leaf is not None and leaf.parent is not None and leaf.parent.type in (
        "arith_expr", "term")


def _in_function(node: parso.tree.NodeOrLeaf) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type == "funcdef":
            return True
        if parent.type == "classdef":
            return False
        parent = parent.parent
    return False


class _Provider:
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(("DropStatement",))

    def __getitem__(self, name: str) -> type[Operator]:
        if name != "DropStatement":
            raise KeyError(name)
        return DropStatement


@dataclass
class Tally:
    module: str
    sampled: int = 0
    caught: int = 0
    no_effect: int = 0
    broken: int = 0  # the change did not even import (counted nowhere)
    seconds: float = 0.0

    @property
    def survived(self) -> int:
        return self.sampled - self.caught - self.no_effect - self.broken

    def score(self, exclude_no_effect: bool) -> float:
        total = self.sampled - self.broken - (self.no_effect if exclude_no_effect else 0)
        return 100.0 * self.caught / total if total else 100.0


def _changed_lines(diff: str) -> tuple[str, str]:
    """(first removed line, first added line) of a mutation diff, stripped."""
    removed = [line[1:].strip() for line in diff.splitlines()
               if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    return (removed[0] if removed else "", added[0] if added else "")


def _no_effect(module_path: str) -> set[tuple[str, str, str, str]]:
    """(operator, function, line, mutated line) of the listed no-effect changes."""
    if not NO_EFFECT.exists():
        return set()
    entries = tomllib.loads(NO_EFFECT.read_text(encoding="utf-8")).get("no-effect", [])
    return {(e["operator"], e["function"], e["line"].strip(), e["mutated"].strip())
            for e in entries if e["module"] == module_path}


def _test_command(tests: tuple[str, ...]) -> str:
    paths = [str(found.relative_to(ROOT)) for name in tests
             for found in sorted((ROOT / "tests").glob(f"*/{name}"))]
    return f"{sys.executable} -m pytest -x -q -p no:cacheprovider " + " ".join(paths)


def run_module(name: str, sample: int, seed: int) -> Tally | None:
    module_path = f"rotwatchd/{name}.py"
    if not (ROOT / module_path).exists():
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--", module_path], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    if dirty:
        sys.exit(f"{module_path} has uncommitted changes; commit or stash them first")
    command = _test_command(MODULES[name])
    started = time.monotonic()
    baseline = subprocess.run(command.split(), cwd=ROOT, capture_output=True, text=True)
    took = time.monotonic() - started
    if baseline.returncode != 0:
        sys.exit(f"{name}: the tests fail without any change:\n{baseline.stdout[-3000:]}")

    RUNS.mkdir(parents=True, exist_ok=True)
    session = RUNS / f"{name.replace('/', '.')}.sqlite"
    session.unlink(missing_ok=True)
    config = ConfigDict({"module-path": module_path, "timeout": 3 * took + 15,
                         "excluded-modules": [], "test-command": command,
                         "distributor": ConfigDict({"name": "local"})})
    with use_db(str(session), WorkDB.Mode.create) as db:
        init([Path(module_path)], db, {})
        tree = parso.parse((ROOT / module_path).read_text(encoding="utf-8"))
        items = sorted((item for item in db.work_items if _kept(item.mutations[0], tree)),
                       key=lambda item: (item.mutations[0].operator_name,
                                         item.mutations[0].occurrence))
        chosen = {item.job_id for item in
                  random.Random(f"{seed}:{name}").sample(items, min(sample, len(items)))}
        for item in db.work_items:
            if item.job_id not in chosen:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        execute(db, config)
        return _tally(name, module_path, db, time.monotonic() - started)


def _tally(name: str, module_path: str, db: WorkDB, seconds: float) -> Tally:
    known = _no_effect(module_path)
    tally = Tally(name, seconds=seconds)
    survivors: list[str] = []
    for item, result in db.completed_work_items:
        if result.worker_outcome == WorkerOutcome.SKIPPED:
            continue
        tally.sampled += 1
        mutation = item.mutations[0]
        if result.test_outcome == TestOutcome.KILLED:
            tally.caught += 1
        elif result.test_outcome != TestOutcome.SURVIVED:
            tally.broken += 1
        elif {(mutation.operator_name, function, *_changed_lines(result.diff or ""))
              for function in (mutation.definition_name or "", "*")} & known:
            tally.no_effect += 1
        else:
            line, mutated = _changed_lines(result.diff or "")
            survivors.append(f"## {mutation.operator_name} line {mutation.start_pos[0]}\n"
                             f"module = \"{module_path}\"\n"
                             f"operator = \"{mutation.operator_name}\"\n"
                             f"function = \"{mutation.definition_name or ''}\"\n"
                             f"line = {line!r}\nmutated = {mutated!r}\n{result.diff}\n")
    report = RUNS / f"{name.replace('/', '.')}.survivors.txt"
    report.write_text("\n".join(survivors), encoding="utf-8")
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), metavar="module")
    parser.add_argument("--sample", type=int, default=25, help="changes per module (25)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; one of: {', '.join(MODULES)}")
    os.nice(10)
    # cosmic-ray puts each mutated module back when its run ends, also on Ctrl-C; make a
    # kill or a closed terminal end the same way instead of leaving a mutant in the tree
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = str(ROOT)  # the tests import this tree, never an installed copy
    OPERATOR_PROVIDERS["rotwatchd"] = _Provider()
    print(f"{'module':<16}{'sampled':>8}{'caught':>8}{'no-eff':>8}{'broken':>8}{'score':>8}"
          f"{'w/o no-eff':>12}{'time':>7}", flush=True)
    for name in args.modules:
        tally = run_module(name, args.sample, args.seed)
        if tally is None:
            continue
        print(f"{name:<16}{tally.sampled:>8}{tally.caught:>8}{tally.no_effect:>8}"
              f"{tally.broken:>8}{tally.score(False):>7.0f}%{tally.score(True):>11.0f}%"
              f"{tally.seconds:>6.0f}s", flush=True)
    print(f"survivors (with diffs): {RUNS.relative_to(ROOT)}/*.survivors.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
