"""Fault campaign: the real daemon (``python -m rotwatchd run``) on temporary folders, hit by
kill -9 at random and at chosen moments, a full disk, an inotify event burst past a small
queue, a watch limit, hostile names and symlink swaps. Prints one table:

  tried      inputs written into the inbox
  lost       inputs whose bytes or upright pixels are nowhere (outbox, review, quarantine, inbox)
  dup        inputs with more than one result (output, review copy, quarantined file)
  damaged    result files that match no input (wrong turn, torn write)
  read-out   result files carrying the content of a secret file outside the folders
  wrote-out  entries changed in the outside folder (a symlinked outbox subfolder points there)
  pending    inputs still waiting in the inbox when the scenario ended
  refused    inputs left in the inbox because their outbox folder is a symlink pointing out
             (refused by design; they count as settled once journaled as an error)
  stray      the daemon's hidden temporary files left in result folders
  recover    seconds from the fault's end (restart, space back, burst end) until the journal
             has every input finished; ">N" when it never did within the timeout

Usage (as root: tmpfs and inotify limits need it; both are restored):
  .venv/bin/python bench/faults.py [--quick] [--only kill-random,disk-full] [--keep]
Not a test; all scenarios run with ``output.original: delete``, where a loss is real.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_tools import (  # noqa: E402
    IN_ACCESS,
    IN_CLOSE_NOWRITE,
    IN_DELETE,
    IN_MOVED_FROM,
    IN_OPEN,
    Daemon,
    Input,
    Judge,
    Trap,
    Verdict,
    Workspace,
    in_progress,
    journal_held,
    pause,
    renames_delayed,
    sysctl,
    wait_for,
)


class Skipped(Exception):
    """The scenario cannot run here (no root, no tmpfs); ``str`` says why."""


def start_under(daemon: Daemon, key: str, value: int) -> None:
    """Start the daemon while the sysctl ``key`` (a /proc/sys path) is ``value``, restored
    afterwards; Skipped when it cannot be set."""
    try:
        with sysctl(key, value):
            daemon.start()
    except OSError as exc:
        raise Skipped(f"cannot set {key.replace('/', '.')}: {exc}") from None


@dataclass(frozen=True)
class Sizes:
    stream: int  # files in the random-kill stream
    kills: int
    reps: int  # kills per chosen moment
    small: int  # files for the disk-full scenario
    burst: int
    folders: int  # subfolders for the watch limit (the limit is 50)
    swaps: int
    timeout: float  # seconds to wait for recovery


FULL = Sizes(stream=200, kills=10, reps=3, small=30, burst=3000, folders=80, swaps=40,
             timeout=120)
QUICK = Sizes(stream=40, kills=3, reps=1, small=10, burst=300, folders=60, swaps=8, timeout=30)

Scenario = Callable[[Workspace, Daemon, Sizes, contextlib.ExitStack, random.Random], Verdict]


def recover(ws: Workspace, since: float, timeout: float, verdict: Verdict) -> None:
    """Record how long after ``since`` (monotonic) the journal held every input as finished."""
    if wait_for(ws.all_handled, timeout, step=0.1):
        verdict.recover = f"{time.monotonic() - since:.1f}"
    else:
        verdict.recover = f">{timeout:.0f}"


# --- scenarios --------------------------------------------------------------------------------


def kill_random(ws: Workspace, daemon: Daemon, size: Sizes, cleanup: contextlib.ExitStack,
                rng: random.Random) -> Verdict:
    """A stream of photos, GIFs (review) and junk (quarantine), some reusing the name of an
    earlier photo already gone from the inbox (a camera counter reset); kill -9 at random
    moments, restart at once."""
    verdict = Verdict()
    daemon.start()
    gap = max(0.01, size.kills * 2.3 / size.stream)
    sent: list[bytes] = []

    def feed() -> None:
        for i in range(size.stream):
            kind = "gif" if i % 20 == 7 else "junk" if i % 20 == 13 else "photo"
            name = f"cam{i // 50}/IMG_{i:04d}.{'gif' if kind == 'gif' else 'jpg'}"
            item = ws.prepare(name, kind)
            if i % 25 == 24:
                reusable = [n for n in sent if not os.path.lexists(ws.inbox_path(n))]
                if reusable:
                    item.name = reusable[0]
                    for earlier in ws.inputs.values():
                        if earlier.name == item.name:
                            earlier.note = ", its name came again with other content"
            ws.put(item)
            if kind == "photo":
                sent.append(item.name)
            pause(gap)

    feeder = threading.Thread(target=feed, name="feeder")
    started = time.monotonic()
    feeder.start()
    last_kill = started
    for at in sorted(rng.uniform(0.3, size.stream * gap) for _ in range(size.kills)):
        pause(started + at - time.monotonic())
        last_kill = time.monotonic()
        daemon.kill()
        daemon.start()
    feeder.join()
    recover(ws, last_kill, size.timeout, verdict)
    return verdict


def _kill_at_temp_file(ws: Workspace, daemon: Daemon, rep: int) -> str | None:
    """SIGSTOP+SIGKILL while the output's temporary file exists: the daemon's renames are
    held back 3 s (strace), so its temporary file waits in the outbox to be caught. Without
    strace, try up to 8 large photos and hope the signal lands before the rename."""
    for attempt in range(8):
        with renames_delayed(daemon.pid, 3.0) as delayed:
            trap = Trap(ws.outbox)
            try:
                ws.send(f"temp-file-{rep}-{attempt}.jpg", "big")
                if trap.wait(lambda mask, name: True, 30) is None:
                    return "no output file appeared"
            finally:
                trap.close()
            daemon.freeze_and_kill()
        if any(p.name.startswith(".") for p in ws.outbox.iterdir()):
            return None if delayed else "hit without strace"
        daemon.start()
        wait_for(ws.all_handled, 30)
    return "the output was always complete before the kill landed (8 tries, no strace)"


def _kill_at_review_copy(ws: Workspace, daemon: Daemon, rep: int) -> str | None:
    """Stop as the review copy's temporary file appears, take the journal lock, let it run
    until the copy has its final name, kill: the copy exists, its journal row does not."""
    trap = Trap(ws.review)
    try:
        ws.send(f"review-copy-{rep}.gif", "gif")
        if trap.wait(lambda mask, name: True, 30) is None:
            return "no review copy appeared"
        daemon.freeze()
        with journal_held(ws):
            daemon.thaw()
            final = trap.wait(lambda mask, name: not name.startswith(b"."), 10)
            daemon.freeze_and_kill()
    finally:
        trap.close()
    return None if final is not None else "the review copy never got its final name"


def _kill_at_quarantine(ws: Workspace, daemon: Daemon, rep: int) -> str | None:
    """The daemon journals the quarantine intent, moves the file, journals the outcome. Hold
    its renames back (strace) until the journal shows the intent, then hold the journal lock,
    let the move happen and kill: the file is in quarantine, its row still says "intended".
    No inotify event comes between the intent and the move (the file is already open), so
    stepping from one access to the next stops too early; that is only the fallback."""
    moved = Trap(ws.quarantine)
    try:
        with renames_delayed(daemon.pid, 3.0) as delayed:
            item = ws.send(f"quarantine-{rep}.jpg", "junk")
            if not delayed:
                return _quarantine_by_steps(ws, daemon, item, moved)
            if not wait_for(lambda: in_progress(ws, item, "quarantine"), 30, step=0.01):
                return "the quarantine intent never showed in the journal"
            with journal_held(ws):
                arrived = moved.wait(lambda mask, name: True, 10)
                daemon.freeze_and_kill()
    finally:
        moved.close()
    if arrived is None:
        return "nothing arrived in quarantine"
    return None if in_progress(ws, item, "quarantine") else "the row was final before the kill"


def _quarantine_by_steps(ws: Workspace, daemon: Daemon, item: Input, moved: Trap) -> str | None:
    """Without strace: SIGSTOP at each access to the junk file until the journal shows the
    intent (only when the stop lands late enough), then as above."""
    touched = Trap(ws.inbox, IN_OPEN | IN_ACCESS | IN_CLOSE_NOWRITE | IN_MOVED_FROM | IN_DELETE)
    try:
        while True:
            event = touched.wait(lambda mask, name: name == item.name, 30)
            if event is None or event[0] & (IN_MOVED_FROM | IN_DELETE):
                return "moved before the journal showed the intent (missed, no strace)"
            daemon.freeze()
            if in_progress(ws, item, "quarantine"):
                break
            daemon.thaw()
        with journal_held(ws):
            daemon.thaw()
            arrived = moved.wait(lambda mask, name: True, 10)
            daemon.freeze_and_kill()
    finally:
        touched.close()
    return None if arrived is not None else "nothing arrived in quarantine"


MOMENTS = {"temp-file": _kill_at_temp_file, "review-copy": _kill_at_review_copy,
           "quarantine": _kill_at_quarantine}


def kill_moments(ws: Workspace, daemon: Daemon, size: Sizes, cleanup: contextlib.ExitStack,
                 rng: random.Random) -> Verdict:
    """kill -9 exactly when the output's temporary file, the review copy or the quarantined
    file is on disk but not yet journaled; restart and wait until it is finished."""
    verdict = Verdict()
    daemon.start()
    worst = 0.0
    for moment, kill_at in MOMENTS.items():
        for rep in range(size.reps):
            problem = kill_at(ws, daemon, rep)
            if problem is not None:
                verdict.notes.append(f"{moment}: {problem}")
            if daemon.exited():
                daemon.start()
            since = time.monotonic()
            if not wait_for(ws.all_handled, size.timeout, step=0.1):
                verdict.recover = f">{size.timeout:.0f}"
                verdict.notes.append(f"{moment}: not finished after the restart")
                return verdict
            worst = max(worst, time.monotonic() - since)
    verdict.recover = f"{worst:.1f}"
    return verdict


def disk_full(ws: Workspace, daemon: Daemon, size: Sizes, cleanup: contextlib.ExitStack,
              rng: random.Random) -> Verdict:
    """The outbox is a 1 MiB tmpfs, filled up; photos arrive; then space comes back."""
    verdict = Verdict()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ws.outbox)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        raise Skipped(f"cannot mount a tmpfs ({mounted.stderr.strip() or 'not root?'})")
    cleanup.callback(subprocess.run, ["umount", "-l", str(ws.outbox)], check=False)
    filler = ws.outbox / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    daemon.start()
    for i in range(size.small):
        ws.send(f"full-{i:03d}.jpg")
    failed = wait_for(lambda: daemon.logs().count("No space left") >= size.small, 30)
    verdict.notes.append("every write failed with ENOSPC" if failed
                         else "not every write saw ENOSPC")
    filler.unlink()
    recover(ws, time.monotonic(), size.timeout, verdict)
    return verdict


def burst(ws: Workspace, daemon: Daemon, size: Sizes, cleanup: contextlib.ExitStack,
          rng: random.Random) -> Verdict:
    """max_queued_events 128 for the daemon's inotify instance; thousands of files at once.
    (At 16 the watch set-up alone overflows it: watchdog re-adds its watches, overflows again,
    and logs tens of thousands of warnings without ever settling.)"""
    verdict = Verdict()
    items = [ws.prepare(f"b{i % 10:02d}/burst-{i:05d}.jpg") for i in range(size.burst)]
    for i in range(10):
        (ws.inbox / f"b{i:02d}").mkdir()
    start_under(daemon, "fs/inotify/max_queued_events", 128)
    for item in items:
        ws.put(item)
    recover(ws, time.monotonic(), size.timeout + size.burst / 20, verdict)  # ~20 files/s
    if "overflow" not in daemon.logs().lower():
        verdict.notes.append("no log line about the inotify overflow")
    return verdict


def watch_limit(ws: Workspace, daemon: Daemon, size: Sizes, cleanup: contextlib.ExitStack,
                rng: random.Random) -> Verdict:
    """max_user_watches 50 while the daemon sets up its watches over more subfolders."""
    verdict = Verdict()
    for i in range(size.folders):
        (ws.inbox / f"d{i:02d}").mkdir()
    start_under(daemon, "fs/inotify/max_user_watches", 50)
    for i in range(size.folders):
        ws.send(f"d{i:02d}/photo.jpg")
    recover(ws, time.monotonic(), size.timeout, verdict)
    if "max_user_watches" not in daemon.logs():
        verdict.notes.append("no log line naming max_user_watches")
    return verdict


HOSTILE_NAMES = (
    b"new\nline.jpg", b"bad\xff\xfeutf8.jpg", b"a" * 251 + b".jpg",
    "\u00e9".encode() * 125 + b".jpg", b"-rf.jpg", b"--help.jpg", b"-", b" lead.jpg",
    b"trail.jpg ", b"tab\there.jpg", b"quote'\"s.jpg", b"back\\slash.jpg", b"semi;$(x).jpg",
    b"*glob?[x].jpg", "\u65e5\u672c \U0001f4f7.jpg".encode(), b"CON.jpg",
    b"sub\ndir/--x.jpg", b"-dir/\xff.jpg", b"b" * 255,
)


def hostile_names(ws: Workspace, daemon: Daemon, size: Sizes, cleanup: contextlib.ExitStack,
                  rng: random.Random) -> Verdict:
    """Photos under names with newlines, invalid UTF-8, 255 bytes, leading dashes..."""
    verdict = Verdict()
    daemon.start()
    for name in HOSTILE_NAMES:
        ws.send(name)
    recover(ws, time.monotonic(), size.timeout, verdict)
    return verdict


def symlink_swap(ws: Workspace, daemon: Daemon, size: Sizes, cleanup: contextlib.ExitStack,
                 rng: random.Random) -> Verdict:
    """Inbox photos swapped for a symlink to an outside secret at random moments after they
    land; meanwhile photos in a subfolder whose outbox twin is a symlink to an outside folder."""
    verdict = Verdict()
    (ws.outbox / "linked").symlink_to(ws.outside / "elsewhere")
    (ws.inbox / "linked").mkdir()
    daemon.start()
    hits = 0
    for rep in range(size.swaps):
        name = f"swap-{rep:03d}.jpg"
        victim = ws.send(name)
        victim.counted = False  # replaced by this scenario, not by the daemon
        if rep % 2:
            pause(rng.uniform(0, 0.4))
            _swap(ws, name, rep)
        else:
            hits += _swap_after_first_read(ws, daemon, name, rep)
        ws.send(f"linked/pic-{rep:03d}.jpg")
    verdict.notes.append(f"{hits} of {(size.swaps + 1) // 2} swaps landed right after the "
                         "daemon's first read of the file")
    recover(ws, time.monotonic(), size.timeout, verdict)
    return verdict


def _swap(ws: Workspace, name: str, rep: int) -> None:
    """Replace ``inbox/name`` by a symlink to the outside secret, atomically."""
    temporary = ws.inbox / f".swap-{rep:03d}"
    temporary.symlink_to(ws.outside / "secret.jpg")
    os.replace(temporary, ws.inbox / name)


def _swap_after_first_read(ws: Workspace, daemon: Daemon, name: str, rep: int) -> int:
    """Stop the daemon when it closes the file after its first read (the hash), swap, go on.
    Returns 1 when the swap landed there, 0 when the moment did not come."""
    touched = Trap(ws.inbox, IN_CLOSE_NOWRITE)
    try:
        event = touched.wait(lambda mask, entry: entry == os.fsencode(name), 10)
        if event is not None:
            daemon.freeze()
        _swap(ws, name, rep)
    finally:
        daemon.thaw()
        touched.close()
    return int(event is not None)


SCENARIOS: dict[str, Scenario] = {
    "kill-random": kill_random, "kill-moments": kill_moments, "disk-full": disk_full,
    "burst": burst, "watch-limit": watch_limit, "hostile-names": hostile_names,
    "symlink-swap": symlink_swap,
}


# --- running and reporting --------------------------------------------------------------------


def run_scenario(name: str, size: Sizes, seed: int, keep: bool) -> Verdict:
    root = Path(tempfile.mkdtemp(prefix=f"rotwatchd-faults-{name}-"))
    ws = Workspace(root)
    daemon = Daemon(ws)
    with contextlib.ExitStack() as cleanup:
        try:
            verdict = SCENARIOS[name](ws, daemon, size, cleanup, random.Random(seed))
        except Skipped as exc:
            daemon.stop()
            return Verdict(recover="skip", notes=[f"skipped: {exc}"])
        except (OSError, RuntimeError, sqlite3.Error) as exc:
            verdict = Verdict(recover="error", notes=[f"harness: {exc}"[:200]])
        finally:
            daemon.stop()
        judged = Judge(ws).verdict()
    judged.recover = verdict.recover
    judged.notes = verdict.notes + judged.notes
    tracebacks = daemon.logs().count("Traceback")
    if tracebacks:
        judged.notes.append(f"{tracebacks} traceback(s) in the daemon log")
    if keep:
        judged.notes.append(f"kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return judged


COLUMNS = ("scenario", "tried", "lost", "dup", "damaged", "read-out", "wrote-out", "pending",
           "refused", "stray", "recover")


def row(name: str, v: Verdict) -> list[str]:
    return [name, *(str(x) for x in (v.tried, v.lost, v.duplicated, v.damaged, v.read_outside,
                                      v.wrote_outside, v.pending, v.refused, v.stray)),
            v.recover]


def print_table(rows: list[tuple[str, Verdict]]) -> None:
    cells = [list(COLUMNS)] + [row(name, v) for name, v in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    for r in cells[:1] + [["-" * w for w in widths]] + cells[1:]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    print()
    for name, v in rows:
        for note in v.notes[:6]:
            print(f"{name}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a few minutes)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios (default all: {', '.join(SCENARIOS)})")
    parser.add_argument("--timeout", type=float, help="seconds to wait for recovery")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep each scenario's folders")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    size = QUICK if args.quick else FULL
    if args.timeout is not None:
        size = Sizes(**{**size.__dict__, "timeout": args.timeout})
    rows = []
    for name in chosen:
        started = time.monotonic()
        verdict = run_scenario(name, size, args.seed, args.keep)
        print(f"{name}: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        rows.append((name, verdict))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
