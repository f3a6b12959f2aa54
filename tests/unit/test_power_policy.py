"""The pure power decisions, fed made-up states and times."""

from __future__ import annotations

import random

import pytest

from rotwatchd.power.policy import (
    DynamicState,
    DynamicThresholds,
    Mode,
    choose_mode,
    governor_for_mode,
    percentile,
    plan_governor_writes,
    seconds_until_sleep,
    wake_target,
)

ALL = frozenset({"powersave", "performance", "schedutil"})


def test_plan_writes_skips_and_unchanged() -> None:
    plan = plan_governor_writes(
        {"p0": ALL, "p1": frozenset({"performance"}), "p2": ALL, "p3": frozenset()},
        {"p0": "schedutil", "p1": "performance", "p2": "powersave", "p3": "x"},
        "powersave",
    )
    assert plan.writes == {"p0": "powersave", "p3": "powersave"}  # p3: unknown list, try it
    assert plan.unchanged == ("p2",)
    assert "'powersave' not available (performance)" in plan.skipped["p1"]


def test_plan_with_per_policy_target_leaves_unlisted_policies_out() -> None:
    plan = plan_governor_writes({"p0": ALL, "p1": ALL}, {"p0": "powersave"}, {"p0": "schedutil"})
    assert plan.writes == {"p0": "schedutil"} and not plan.skipped and not plan.unchanged


def test_wake_target_prefers_active_governor() -> None:
    originals = {"p0": "schedutil", "p1": "ondemand"}
    assert wake_target(originals, None) == originals
    assert wake_target(originals, "performance") == "performance"


@pytest.mark.parametrize(
    ("now", "depth", "busy", "expected"),
    [
        (100.0, 0, 0, 60.0),  # just active: the full timeout remains
        (130.0, 0, 0, 30.0),
        (160.0, 0, 0, 0.0),  # due now
        (500.0, 0, 0, 0.0),  # overdue still means "now", never negative
        (500.0, 3, 0, None),  # queued work: no sleep whatever the clock says
        (500.0, 0, 1, None),  # a file in progress: same
    ],
)
def test_seconds_until_sleep(now: float, depth: int, busy: int, expected: float | None) -> None:
    assert seconds_until_sleep(now, 100.0, 60.0, depth, busy) == expected


TH = DynamicThresholds(up_queue=8, down_queue=1, up_cpu=85, down_cpu=50, min_dwell=10)


def test_mode_goes_up_on_queue_or_cpu_and_down_only_when_both_calm() -> None:
    start = DynamicState(Mode.BALANCED, 0.0)
    assert choose_mode(start, 20, 8, 0, TH).mode is Mode.PERFORMANCE
    assert choose_mode(start, 20, 0, 90, TH).mode is Mode.PERFORMANCE
    assert choose_mode(start, 20, 7, 84, TH) is start  # inside the band: hold
    perf = DynamicState(Mode.PERFORMANCE, 0.0)
    assert choose_mode(perf, 20, 1, 60, TH) is perf  # cpu still above the low mark
    assert choose_mode(perf, 20, 2, 10, TH) is perf  # queue still above the low mark
    down = choose_mode(perf, 20, 1, 50, TH)
    assert down == DynamicState(Mode.BALANCED, 20)


def test_min_dwell_blocks_early_switches() -> None:
    state = DynamicState(Mode.BALANCED, 100.0)
    assert choose_mode(state, 109.9, 100, 100, TH) is state
    assert choose_mode(state, 110.0, 100, 100, TH).mode is Mode.PERFORMANCE


def test_never_flaps_under_noisy_load() -> None:
    """A load that jumps across both marks every second for an hour switches at most once
    per min_dwell, and a load that wanders inside the band never switches."""
    rng = random.Random(7)
    state = DynamicState(Mode.BALANCED, -TH.min_dwell)
    switches = 0
    for second in range(3600):
        spike = second % 2 == 0
        nxt = choose_mode(state, float(second), 20 if spike else 0, 95 if spike else 5, TH)
        switches += nxt is not state
        state = nxt
    assert 0 < switches <= 3600 / TH.min_dwell + 1

    state = DynamicState(Mode.BALANCED, -TH.min_dwell)
    for second in range(3600):
        nxt = choose_mode(state, float(second), rng.randint(2, 7), rng.uniform(51, 84), TH)
        assert nxt is state


def test_thresholds_must_form_a_band() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        DynamicThresholds(up_queue=2, down_queue=2)
    with pytest.raises(ValueError, match="hysteresis"):
        DynamicThresholds(up_cpu=50, down_cpu=60)


def test_governor_for_mode() -> None:
    assert governor_for_mode(Mode.BALANCED, "schedutil", "performance") == "schedutil"
    assert governor_for_mode(Mode.PERFORMANCE, "schedutil", "performance") == "performance"


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.95) == 10.0
    assert percentile([3.0], 0.95) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
