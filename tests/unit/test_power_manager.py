"""PowerManager: dynamic balanced/performance choice writing a fake sysfs tree."""

from __future__ import annotations

import threading
from pathlib import Path

from helpers import wait_until
from helpers.fake_sysfs import make_cpufreq_tree, read_governors

from rotwatchd.config import PowerConfig
from rotwatchd.power.governor import GovernorControl
from rotwatchd.power.manager import PowerManager, system_cpu_percent
from rotwatchd.power.policy import DynamicThresholds, Mode
from rotwatchd.power.sleep import PowerState

TH = DynamicThresholds(up_queue=4, down_queue=0, up_cpu=80, down_cpu=30, min_dwell=5)


class Load:
    def __init__(self) -> None:
        self.queue = 0
        self.cpu = 0.0
        self.now = 0.0


def manager(tree: Path, load: Load, **kw: float) -> PowerManager:
    settings = PowerConfig(cpufreq_path=tree, dynamic=True)
    return PowerManager(
        settings,
        GovernorControl(tree),
        lambda: load.queue,
        thresholds=TH,
        cpu_percent=lambda: load.cpu,
        clock=lambda: load.now,
        **kw,
    )


def test_switches_with_load_and_dwell(tmp_path: Path) -> None:
    tree = make_cpufreq_tree(tmp_path / "cpu", ("ondemand",) * 2)
    load = Load()
    pm = manager(tree, load)
    assert pm.sample() is Mode.BALANCED
    assert read_governors(tree) == ["schedutil", "schedutil"]  # first sample writes balanced
    load.queue, load.now = 10, 1.0
    assert pm.sample() is Mode.PERFORMANCE and read_governors(tree) == ["performance"] * 2
    load.queue, load.now = 0, 3.0
    assert pm.sample() is Mode.PERFORMANCE  # calm, but within the 5 s dwell
    load.now = 6.0
    assert pm.sample() is Mode.BALANCED and read_governors(tree) == ["schedutil"] * 2
    assert pm.status() == {"mode": "balanced", "switches": 2}


def test_quiet_while_asleep_and_rewrites_after_wake(tmp_path: Path) -> None:
    tree = make_cpufreq_tree(tmp_path / "cpu", ("ondemand",))
    load = Load()
    pm = manager(tree, load)
    pm.sample()
    pm.on_power_state(PowerState.ASLEEP)
    (tree / "cpufreq/policy0/scaling_governor").write_text("powersave\n")  # the controller's
    load.queue, load.cpu, load.now = 50, 100.0, 100.0
    pm.sample()
    assert read_governors(tree) == ["powersave"]  # the sleeping governor is left alone
    pm.on_power_state(PowerState.AWAKE)
    assert pm.sample() is Mode.PERFORMANCE and read_governors(tree) == ["performance"]


def test_thread_follows_the_load_and_stops(tmp_path: Path) -> None:
    tree = make_cpufreq_tree(tmp_path / "cpu", ("ondemand",))
    load = Load()
    pm = manager(tree, load, interval=0.05)
    pm.start()
    try:
        assert wait_until(lambda: read_governors(tree) == ["schedutil"], 5)
        load.queue, load.now = 9, 10.0
        assert wait_until(lambda: read_governors(tree) == ["performance"], 5)
        pm.on_power_state(PowerState.ASLEEP)
        assert pm.mode is Mode.PERFORMANCE
    finally:
        pm.stop_and_join()
    assert not any(t.name == "rotwatchd-power" for t in threading.enumerate())


def test_real_cpu_sampler_is_a_percentage() -> None:
    system_cpu_percent()
    assert 0.0 <= system_cpu_percent() <= 100.0
