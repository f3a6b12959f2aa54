"""GovernorControl against fake cpufreq trees: discovery, switching, restoring, and every way
sysfs can refuse (each logged once, none fatal)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers.fake_sysfs import make_cpufreq_tree, read_governors
from helpers.paths import REPO_ROOT

from rotwatchd.power.governor import GovernorControl, discover_policies


@pytest.mark.parametrize("layout", ["cpu", "policy", "both"])
def test_discovers_each_policy_once(tmp_path: Path, layout: str) -> None:
    root = make_cpufreq_tree(tmp_path / "cpu", ("schedutil",) * 3, layout=layout)
    policies = discover_policies(root)
    assert len(policies) == 3  # "both" must not count cpuN/cpufreq and policyN twice
    assert all("powersave" in p.available for p in policies)


def test_natural_order_for_many_cpus(tmp_path: Path) -> None:
    root = make_cpufreq_tree(tmp_path / "cpu", ("ondemand",) * 12, layout="cpu")
    names = [p.name for p in discover_policies(root)]
    assert names == [f"cpu{i}" for i in range(12)]


def test_switch_and_restore_originals(tmp_path: Path) -> None:
    root = make_cpufreq_tree(tmp_path / "cpu", ("schedutil", "ondemand"))
    control = GovernorControl(root)
    assert control.remember_originals() == {"policy0": "schedutil", "policy1": "ondemand"}

    report = control.apply("powersave")
    assert report.ok and report.changed == {"policy0": "powersave", "policy1": "powersave"}
    assert read_governors(root) == ["powersave", "powersave"]

    control.apply("performance")
    assert control.remember_originals()["policy1"] == "ondemand"  # first snapshot sticks
    control.restore()
    assert read_governors(root) == ["schedutil", "ondemand"]


def test_write_to_current_governor_is_skipped(tmp_path: Path) -> None:
    root = make_cpufreq_tree(tmp_path / "cpu", ("powersave", "schedutil"))
    report = GovernorControl(root).apply("powersave")
    assert report.unchanged == ["policy0"] and report.changed == {"policy1": "powersave"}


def test_missing_tree_is_logged_once_and_harmless(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    control = GovernorControl(tmp_path / "no-such-dir")
    with caplog.at_level(logging.WARNING):
        assert control.remember_originals() == {}
        assert control.apply("powersave").ok
        control.apply("powersave")
        control.restore()
    assert not control.usable
    lines = [r.getMessage() for r in caplog.records if "no cpufreq" in r.getMessage()]
    assert len(lines) == 1 and str(tmp_path / "no-such-dir") in lines[0]


def test_unavailable_governor_is_logged_once_and_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A Raspberry Pi kernel may offer only "ondemand performance": powersave is not there.
    root = make_cpufreq_tree(tmp_path / "cpu", ("ondemand",) * 2, available="ondemand performance")
    control = GovernorControl(root)
    with caplog.at_level(logging.WARNING):
        first = control.apply("powersave")
        control.apply("powersave")
    assert set(first.skipped) == {"policy0", "policy1"} and not first.changed
    assert read_governors(root) == ["ondemand", "ondemand"]
    warnings = [r.getMessage() for r in caplog.records if "not available" in r.getMessage()]
    assert len(warnings) == 2  # one per policy, not one per attempt
    assert "'powersave' not available" in warnings[0]


def test_unreadable_available_list_still_tries_the_write(tmp_path: Path) -> None:
    root = make_cpufreq_tree(tmp_path / "cpu", ("schedutil",), layout="cpu")
    (root / "cpu0" / "cpufreq" / "scaling_available_governors").unlink()
    assert GovernorControl(root).apply("powersave").ok
    assert read_governors(root) == ["powersave"]


_CHILD = """
import json, logging, os, sys
from pathlib import Path
from rotwatchd.power.governor import GovernorControl
if os.geteuid() == 0:  # become nobody after the imports: the interpreter may live under /root
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
control = GovernorControl(Path(sys.argv[1]))
control.remember_originals()
reports = [control.apply("powersave"), control.apply("powersave"), control.restore()]
print(json.dumps({"failed": reports[0].failed, "changed": reports[0].changed,
                  "problems": control.problems}))
"""


def test_read_only_governor_file_is_logged_once_no_crash() -> None:
    """The service user cannot write a 0444 scaling_governor (no tmpfiles.d rule installed).

    Run as an unprivileged user, as the service is: root would bypass the permission bits, so
    when the suite runs as root the check runs in a child process that switches to ``nobody``.
    """
    # Not tmp_path: pytest's base temp is 0700 root, which nobody cannot traverse.
    with tempfile.TemporaryDirectory(prefix="rotwatchd-ro-") as tmp:
        os.chmod(tmp, 0o755)
        root = make_cpufreq_tree(Path(tmp) / "cpu", ("schedutil", "schedutil"), layout="cpu")
        (root / "cpu1" / "cpufreq" / "scaling_governor").chmod(0o444)
        (root / "cpu0" / "cpufreq" / "scaling_governor").chmod(0o666)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(root)],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )
        assert child.returncode == 0, child.stderr
        result = json.loads(child.stdout)
        assert result["changed"] == {"cpu0": "powersave"}
        assert "Permission denied" in result["failed"]["cpu1"]
        refused = [line for line in child.stderr.splitlines() if "cpu1 governor" in line]
        assert len(refused) == 1, child.stderr  # logged once across three attempts
        assert "systemd/README.md" in refused[0]
        assert read_governors(root) == ["schedutil", "schedutil"]  # restore still worked for cpu0
