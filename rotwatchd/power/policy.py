"""Pure power decisions: no sysfs, no threads, no clock of their own.

Every function here takes the state and the time it needs as arguments and returns a value, so
the rules that decide *when to sleep*, *which governor to write where* and *when the dynamic
mode switches between balanced and performance* are tested directly with made-up numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


# -- which governor goes where -------------------------------------------------------------
@dataclass(frozen=True)
class WritePlan:
    """The governor writes one switch needs, and the policies it must leave alone."""

    writes: dict[str, str] = field(default_factory=dict)  # policy -> governor to write
    unchanged: tuple[str, ...] = ()  # policies already on the wanted governor
    skipped: dict[str, str] = field(default_factory=dict)  # policy -> why it is left alone


def plan_governor_writes(
    available: Mapping[str, frozenset[str]],
    current: Mapping[str, str],
    wanted: str | Mapping[str, str],
) -> WritePlan:
    """Decide, per policy, whether to write *wanted* (one governor or a per-policy mapping).

    Inputs: the governors each policy offers (empty = unknown, so the write is tried and the
    kernel decides), the governors read now, and the target. A policy missing from a mapping
    target is left out of the plan. Returns a :class:`WritePlan`; never raises.
    """
    writes: dict[str, str] = {}
    unchanged: list[str] = []
    skipped: dict[str, str] = {}
    for name, offered in available.items():
        target = wanted if isinstance(wanted, str) else wanted.get(name)
        if not target:
            continue
        if offered and target not in offered:
            skipped[name] = f"governor {target!r} not available ({' '.join(sorted(offered))})"
        elif current.get(name) == target:
            unchanged.append(name)
        else:
            writes[name] = target
    return WritePlan(writes, tuple(unchanged), skipped)


def wake_target(originals: Mapping[str, str], active_governor: str | None) -> str | dict[str, str]:
    """What to write when waking: ``power.active_governor`` if set, else the originals."""
    return active_governor if active_governor else dict(originals)


# -- when to sleep -------------------------------------------------------------------------
def seconds_until_sleep(
    now: float, last_activity: float, idle_timeout: float, queue_depth: int, busy_workers: int
) -> float | None:
    """How long until the daemon may go to sleep.

    Returns None while work is queued or running (sleep is impossible until that changes),
    0.0 when the daemon has been idle for *idle_timeout* seconds and must sleep now, and the
    positive remainder otherwise. *now* and *last_activity* come from the same monotonic clock.
    """
    if queue_depth > 0 or busy_workers > 0:
        return None
    return max(0.0, last_activity + idle_timeout - now)


# -- dynamic mode (PowerManager) -------------------------------------------------------------
class Mode(StrEnum):
    """The two governors the PowerManager chooses between while awake."""

    BALANCED = "balanced"
    PERFORMANCE = "performance"


@dataclass(frozen=True)
class DynamicThresholds:
    """Hysteresis band for :func:`choose_mode`.

    Going up needs a queue of ``up_queue`` files or ``up_cpu`` percent CPU; coming down needs
    both at or below the lower marks. Between the marks the mode holds, and no switch happens
    sooner than ``min_dwell`` seconds after the previous one, so the governor cannot flap
    faster than once per ``min_dwell`` whatever the load does.
    """

    up_queue: int = 8
    down_queue: int = 1
    up_cpu: float = 85.0
    down_cpu: float = 50.0
    min_dwell: float = 10.0

    def __post_init__(self) -> None:
        if self.down_queue >= self.up_queue or self.down_cpu >= self.up_cpu:
            raise ValueError("hysteresis needs down_* marks strictly below up_* marks")
        if self.min_dwell < 0:
            raise ValueError("min_dwell must be >= 0")


@dataclass(frozen=True)
class DynamicState:
    """The mode in force and the (monotonic) time it was entered."""

    mode: Mode
    since: float


def choose_mode(
    state: DynamicState,
    now: float,
    queue_depth: int,
    cpu_percent: float,
    thresholds: DynamicThresholds | None = None,
) -> DynamicState:
    """Next dynamic-mode state from the queue depth and system CPU load (0-100 %).

    Returns *state* itself when nothing changes, a new state (``since=now``) on a switch.
    """
    thresholds = thresholds or DynamicThresholds()
    if now - state.since < thresholds.min_dwell:
        return state
    busy = queue_depth >= thresholds.up_queue or cpu_percent >= thresholds.up_cpu
    calm = queue_depth <= thresholds.down_queue and cpu_percent <= thresholds.down_cpu
    if state.mode is Mode.BALANCED and busy:
        return DynamicState(Mode.PERFORMANCE, now)
    if state.mode is Mode.PERFORMANCE and calm:
        return DynamicState(Mode.BALANCED, now)
    return state


def governor_for_mode(mode: Mode, balanced_governor: str, performance_governor: str) -> str:
    """Map a dynamic mode to the configured governor name."""
    return performance_governor if mode is Mode.PERFORMANCE else balanced_governor


# -- latency figures -------------------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of *values* (``fraction`` in [0, 1]). Raises ValueError if empty."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
