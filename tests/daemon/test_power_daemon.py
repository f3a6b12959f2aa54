"""PowerRuntime on the real Daemon (in process, injected classifier, fake sysfs tree):
idle -> powersave, a new file -> governors restored and the file processed, status JSON."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import MarkerClassifier, fast_config, make_photo, wait_until
from helpers.fake_sysfs import make_cpufreq_tree, read_governors

from rotwatchd.power.runtime import PowerRuntime
from rotwatchd.power.sleep import PowerState

ORIGINAL = ["schedutil", "ondemand"]


def power_config(tmp_path: Path, tree: Path, **power: Any) -> Any:
    section: dict[str, Any] = {"idle_timeout": "400ms", "cpufreq_path": str(tree)}
    section.update(power)
    return fast_config(tmp_path, power=section)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_cpufreq_tree(tmp_path / "sys-cpu", tuple(ORIGINAL))


def test_idle_sleep_then_a_new_file_wakes_restores_and_is_processed(
    tmp_path: Path, tree: Path, daemon_factory: Any
) -> None:
    config = power_config(tmp_path, tree)
    daemon, results = daemon_factory(config, start=False)
    power = PowerRuntime.attach(daemon)
    seen: list[tuple[PowerState, list[str]]] = []
    power.sleep.add_listener(lambda state: seen.append((state, read_governors(tree))))
    started = time.monotonic()
    daemon.start()
    assert power.sleep.wait_asleep(timeout=config.power.idle_timeout + 1.0)
    assert time.monotonic() - started <= config.power.idle_timeout + 1.0
    assert read_governors(tree) == ["powersave", "powersave"]

    make_photo(config.inboxes[0].path / "turned.jpg", correction=90)
    (result,) = results.wait_count(1)
    assert result.outcome == "done" and (tmp_path / "outbox" / "turned.jpg").is_file()
    # Woken before the file was processed, restored to what was there before the first sleep.
    assert power.sleep.wakes == 1 and seen[1] == (PowerState.AWAKE, ORIGINAL)

    status = wait_until(lambda: _status_with_latency(config.state_dir), timeout=10)
    assert status["power"]["wake_latency_ms"]["count"] == 1
    assert status["power"]["wake_latency_ms"]["p50"] > 0

    assert power.sleep.wait_asleep(timeout=config.power.idle_timeout + 1.0)
    daemon.stop()  # lifecycle on_stopping: threads stop, originals written back
    assert read_governors(tree) == ORIGINAL


def _status_with_latency(state_dir: Path) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return document if "wake_latency_ms" in document.get("power", {}) else None


def test_model_released_while_asleep_and_reloaded_for_the_next_file(
    tmp_path: Path, tree: Path, daemon_factory: Any, classifier: MarkerClassifier
) -> None:
    config = power_config(tmp_path, tree, release_model_when_idle=True)
    daemon, results = daemon_factory(config, start=False)
    power = PowerRuntime.attach(daemon)
    daemon.start()
    assert power.sleep.wait_asleep(timeout=5)
    assert not daemon.model.loaded and classifier.closed
    make_photo(config.inboxes[0].path / "a.jpg", correction=180)
    (result,) = results.wait_count(1)
    assert result.outcome == "done" and daemon.model.loads == 2 and classifier.calls == 1


def test_unavailable_governor_is_logged_and_files_still_flow(
    tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tree = make_cpufreq_tree(tmp_path / "sys-cpu", ("ondemand",), available="ondemand performance")
    config = power_config(tmp_path, tree)
    daemon, results = daemon_factory(config, start=False)
    power = PowerRuntime.attach(daemon)
    with caplog.at_level(logging.WARNING, logger="rotwatchd.power"):
        daemon.start()
        assert power.sleep.wait_asleep(timeout=5)
        make_photo(config.inboxes[0].path / "b.jpg", correction=270)
        assert results.wait_count(1)[0].outcome == "done"
        assert power.sleep.wait_asleep(timeout=5)  # a second sleep: no second warning
    assert read_governors(tree) == ["ondemand"]
    warnings = [r.getMessage() for r in caplog.records if "not available" in r.getMessage()]
    assert len(warnings) == 1 and "'powersave'" in warnings[0]
    assert power.status()["governor_problems"]


def test_dynamic_mode_and_reload_of_power_settings(
    tmp_path: Path, tree: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = power_config(tmp_path, tree, dynamic=True, idle_timeout="1h")
    daemon, results = daemon_factory(config, start=False)
    power = PowerRuntime.attach(daemon, cpu_percent=lambda: 5.0)  # a quiet machine
    daemon.start()
    assert power.manager is not None
    # The first sample writes the balanced governor.
    wait_until(lambda: read_governors(tree) == ["schedutil", "schedutil"])
    assert power.state is PowerState.AWAKE
    assert power.status()["dynamic"]["mode"] == "balanced"

    other = make_cpufreq_tree(tmp_path / "other-cpu", ("ondemand",))
    with caplog.at_level(logging.WARNING, logger="rotwatchd.power"):
        daemon.reload(power_config(tmp_path, other, dynamic=True, idle_timeout="300ms"))
    assert power.sleep.settings.idle_timeout == pytest.approx(0.3)
    assert "power.cpufreq_path changed: takes effect after a restart" in caplog.text
    assert power.settings.cpufreq_path == tree  # the governors in use stay under control
    assert power.sleep.wait_asleep(timeout=5)
    assert read_governors(tree) == ["powersave", "powersave"]
    make_photo(config.inboxes[0].path / "c.jpg", correction=90)
    assert results.wait_count(1)[0].outcome == "done"
    daemon.stop()
    assert read_governors(tree) == ORIGINAL
    assert read_governors(other) == ["ondemand"]


def test_settings_mirror_the_validated_config_section(tmp_path: Path, tree: Path) -> None:
    from rotwatchd.config import PowerConfig

    config = power_config(tmp_path, tree, idle_timeout="2m", active_governor="performance",
                          release_model_when_idle=True, dynamic=True,
                          balanced_governor="ondemand")
    assert config.power == PowerConfig(
        idle_timeout=120.0, idle_governor="powersave", active_governor="performance",
        cpufreq_path=tree, release_model_when_idle=True, dynamic=True,
        balanced_governor="ondemand", performance_governor="performance",
    )
    (tmp_path / "defaults").mkdir()
    defaults = fast_config(tmp_path / "defaults", power={"cpufreq_path": str(tree)}).power
    assert defaults == PowerConfig(cpufreq_path=tree)
