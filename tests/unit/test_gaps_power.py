"""The dynamic governor under steady load, the default hysteresis band at its exact edges, and
restoring governors when one policy has no remembered original."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.fake_sysfs import make_cpufreq_tree, read_governors

from rotwatchd.config import PowerConfig
from rotwatchd.power.governor import GovernorControl
from rotwatchd.power.manager import PowerManager
from rotwatchd.power.policy import (
    DynamicState,
    DynamicThresholds,
    Mode,
    choose_mode,
    plan_governor_writes,
)

ALL = frozenset({"powersave", "performance", "schedutil"})


def test_steady_load_switches_once_and_never_rewrites_the_governor(tmp_path: Path) -> None:
    """An hour of a full queue sampled every 2 s: one switch to performance, then nothing (a
    same-mode "switch" every min_dwell would rewrite the governor and log it all day)."""
    tree = make_cpufreq_tree(tmp_path / "cpu", ("ondemand",) * 2)
    clock = [0.0]
    pm = PowerManager(PowerConfig(cpufreq_path=tree, dynamic=True), GovernorControl(tree),
                      lambda: 50, cpu_percent=lambda: 100.0, clock=lambda: clock[0])
    for second in range(0, 3600, 2):
        clock[0] = float(second)
        assert pm.sample() is Mode.PERFORMANCE
    assert read_governors(tree) == ["performance"] * 2
    assert pm.status() == {"mode": "performance", "switches": 1}

    calm = DynamicState(Mode.BALANCED, 0.0)
    for second in range(10, 3600, 2):  # and steady calm never "switches" to balanced again
        assert choose_mode(calm, float(second), 0, 5.0) is calm


def test_the_default_band_edges() -> None:
    """Defaults: up at 8 queued files or 85 % CPU, back down at <= 1 file and <= 50 % CPU,
    at most one switch per 10 s."""
    low, high = DynamicState(Mode.BALANCED, 0.0), DynamicState(Mode.PERFORMANCE, 0.0)
    assert choose_mode(low, 10.0, 8, 0.0).mode is Mode.PERFORMANCE
    assert choose_mode(low, 10.0, 7, 84.9) is low
    assert choose_mode(low, 10.0, 0, 85.0).mode is Mode.PERFORMANCE
    assert choose_mode(low, 9.99, 100, 100.0) is low
    assert choose_mode(high, 10.0, 1, 50.0).mode is Mode.BALANCED
    assert choose_mode(high, 10.0, 2, 0.0) is high
    assert choose_mode(high, 10.0, 0, 50.1) is high


def test_a_negative_dwell_is_refused_and_zero_allowed() -> None:
    with pytest.raises(ValueError, match="min_dwell"):
        DynamicThresholds(min_dwell=-0.5)
    assert DynamicThresholds(min_dwell=0).min_dwell == 0


def test_a_policy_without_a_remembered_governor_does_not_stop_the_others() -> None:
    """A CPU that came online after the originals were read has no original: the policies
    after it are still restored."""
    plan = plan_governor_writes({"policy0": ALL, "policy1": ALL, "policy2": ALL},
                                {"policy0": "powersave", "policy1": "powersave",
                                 "policy2": "powersave"},
                                {"policy1": "schedutil", "policy2": "performance"})
    assert plan.writes == {"policy1": "schedutil", "policy2": "performance"}
