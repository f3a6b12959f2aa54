"""The daemon's status file (``<state_dir>/status.json``) and how ``rotwatchd status`` reads it.

The daemon publishes a small JSON document atomically whenever something changes (a file
finished, work arrived, power state changed), at most every ``min_interval`` seconds, and never
on its own while nothing happens (the publisher thread waits on a condition without timeout).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rotwatchd.output.atomic import atomic_write_bytes
from rotwatchd.threads.stoppable import StoppableThread

log = logging.getLogger(__name__)

STATUS_NAME = "status.json"
Snapshot = Callable[[], dict[str, Any]]


class StatusPublisher(StoppableThread):
    """Writes ``snapshot()`` to ``state_dir/status.json`` after each :meth:`mark_dirty`."""

    def __init__(self, state_dir: Path, snapshot: Snapshot, *, min_interval: float = 0.5) -> None:
        super().__init__("rotwatchd-status")
        self.path = state_dir / STATUS_NAME
        self._snapshot = snapshot
        self._min_interval = min_interval
        self._dirty = True  # guarded by self._cond

    def mark_dirty(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def stop(self) -> None:
        """Stop the thread after one last write (callers then join())."""
        with self._cond:
            self._dirty = True
        super().stop()

    def publish(self) -> None:
        """Write the snapshot now (also usable without the thread)."""
        document = self._snapshot()
        document["updated_at"] = time.time()
        data = json.dumps(document, indent=1, sort_keys=True).encode()
        try:
            atomic_write_bytes(self.path, data)
        except OSError as exc:
            log.error("cannot write %s: %s", self.path, exc)

    def run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stopping)
                self._dirty = False
                stopping = self._stopping
            self.publish()
            if stopping:
                return
            with self._cond:  # rate limit, but let stop() cut the wait short
                self._cond.wait_for(lambda: self._stopping, self._min_interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last published status, with ``running`` set from the pid; None if never written."""
    path = state_dir / STATUS_NAME
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot read {path}: {exc}") from None
    pid = document.get("pid")
    document["running"] = (document.get("state") == "running" and isinstance(pid, int)
                           and pid_alive(pid))
    return document


def _ago(timestamp: object) -> str:
    if not isinstance(timestamp, int | float):
        return "?"
    return f"{max(0.0, time.time() - timestamp):.0f}s ago"


def _inbox_lines(inboxes: object) -> list[str]:
    if not isinstance(inboxes, list):
        return []
    lines = []
    for inbox in inboxes:
        if not isinstance(inbox, dict):
            continue
        state = inbox.get("state") or ("polling" if inbox.get("polling") else "watching")
        if state == "missing":
            how = (f"MISSING ({inbox.get('missing') or 'removed or unmounted'}): nothing there "
                   "is processed; it is watched and rescanned again as soon as it is back")
        elif inbox.get("fallback"):
            how = f"polling instead of inotify: {inbox['fallback']}"
        else:
            how = str(state)
        lines.append(f"inbox {inbox.get('path')}: {how}")
    return lines


#: How ``rotwatchd status`` names the reasons files are held back (settler holds).
_WAITING = {"retry": "to retry once the output can be written (disk full, read-only)",
            "incomplete": "looking unfinished, left in the inbox for their writer",
            "refused": "refused: their output folder is a symbolic link (retried once it is "
                       "a real folder)"}


def _waiting_lines(waiting: object) -> list[str]:
    if not isinstance(waiting, dict):
        return []
    lines = []
    for why, held in sorted(waiting.items()):
        count = held.get("count", 0) if isinstance(held, dict) else 0
        paths = held.get("paths", []) if isinstance(held, dict) else []
        lines.append(f"waiting: {count} {_WAITING.get(why, why)}")
        lines.extend(f"  {path}" for path in paths)
    return lines


#: How control characters are written where text from a file name is shown on one line.
_ESCAPED = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``...): a file named
    ``a\\nb.jpg`` or holding a terminal escape can neither split a line, forge one, nor steer
    the terminal it is printed on."""
    return text.translate(_ESCAPED)


def format_status(document: dict[str, Any]) -> str:
    """Human-readable lines for ``rotwatchd status``."""
    lines = []
    if document.get("running"):
        lines.append(f"rotwatchd is running (pid {document.get('pid')}, "
                     f"updated {_ago(document.get('updated_at'))})")
    else:
        lines.append(f"rotwatchd is not running (last status {_ago(document.get('updated_at'))})")
    lines.extend(_inbox_lines(document.get("inboxes")))
    counts = document.get("counts", {})
    lines.append("files: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    queue = document.get("queue", {})
    lines.append(f"queue: {queue.get('depth', 0)} queued, {queue.get('running', 0)} in progress, "
                 f"{queue.get('pending', 0)} settling")
    lines.extend(_waiting_lines(document.get("waiting")))
    power = document.get("power") or {}
    # a stopped daemon's last power state is history, not what the machine does now
    label = "power: " if document.get("running") else "power when it stopped: "
    with contextlib.suppress(AttributeError):
        lines.append(label + ", ".join(f"{k} {v}" for k, v in power.items()
                                       if not isinstance(v, dict | list)))
    lines.extend(_adapt_lines(document.get("adapt")))
    errors = document.get("last_errors", [])
    if errors:
        lines.append("last problems:")
        lines.extend(f"  {e.get('outcome')}: {e.get('path')}: {e.get('detail')}" for e in errors)
    return "\n".join(one_line(line) for line in lines)


def _adapt_lines(adapt: Any) -> list[str]:
    """On-device adaptation: the labels, whether a personal head decides, and its figures."""
    if not isinstance(adapt, dict) or "labels" not in adapt:
        return []
    labels = adapt.get("labels") or {}
    earlier = adapt.get("labels_earlier_network")
    held = (f" ({earlier} more computed by an earlier scene network: not used, computed again "
            "while idle where the photo is still there)" if _is_number(earlier) else "")
    lines = [f"adaptation: {'on' if adapt.get('enabled') else 'off'}, labels "
             + ", ".join(f"{k} {v}" for k, v in labels.items()) + held]
    used = adapt.get("in_use")
    if adapt.get("personal_head") and isinstance(used, dict):
        lines.append("  personal head in use" + _head_figures(used))
        support = used.get("support")
        if isinstance(support, dict) and _is_number(support.get("centroids")):
            inside = support.get("held_out_inside")
            share = (f", {inside:.1%} of held-out photos inside" if _is_number(inside)
                     else "")
            lines.append(f"  it decides only photos like its labels: {support['centroids']}"
                         f" centroids{share}")
    elif adapt.get("not_used"):
        lines.append(f"  personal head: not used ({adapt.get('not_used')}; the shipped head "
                     "decides)")
    else:
        lines.append("  personal head: none in use (the shipped head decides)")
    last = adapt.get("last_fit")
    if isinstance(last, dict) and not last.get("accepted"):
        # the verdict says itself what happened ("kept aside: ...", "not fitted: ...")
        lines.append(f"  last fit: {last.get('reason')}")
    return lines


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _head_figures(used: dict[str, Any]) -> str:
    """What the guardrail measured when it accepted the head in use, as far as its figures
    tell (a head whose figures lack a count or a share says nothing about it)."""
    parts = []
    held_out = used.get("labels_held_out")
    if _is_number(held_out):
        parts.append(f"on {held_out} held-out photos x 4")
    shipped, personal = used.get("shipped"), used.get("personal")
    if (isinstance(shipped, dict) and isinstance(personal, dict)
            and _is_number(shipped.get("decided_correct"))
            and _is_number(personal.get("decided_correct"))):
        parts.append(f"decided correctly {shipped['decided_correct']:.1%} (shipped) -> "
                     f"{personal['decided_correct']:.1%}")
        if _is_number(personal.get("wrong_among_decided")):
            parts.append(f"wrong among decided {personal['wrong_among_decided']:.1%}")
    return ": " + ", ".join(parts) if parts else " (the figures it was accepted with are " \
        "not recorded)"
