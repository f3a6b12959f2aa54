"""The systemd unit, sysusers.d and tmpfiles.d files: checked by systemd's own tools.

CI installs systemd (``.ci/run``); where ``systemd-analyze`` is missing these tests skip and
say so, they never pass vacuously.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers.fake_sysfs import make_cpufreq_tree, read_governors
from helpers.paths import REPO_ROOT

REPO = REPO_ROOT
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "rotwatchd.service"
SOCKET = SYSTEMD / "rotwatchd.socket"

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (apt-get install systemd); CI installs it",
)


def unit_settings(text: str) -> dict[str, list[str]]:
    """[Service]/[Unit] keys -> every value given (systemd allows repeated keys)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def run_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SYSTEMD / "verify.sh"), str(unit)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_unit_states_the_service_contract() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["WatchdogSec"] == ["30s"]
    assert s["User"] == ["rotwatchd"] and s["CapabilityBoundingSet"] == [""]
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]
    assert s["PrivateTmp"] == ["yes"] and s["ProtectHome"] == ["yes"]
    assert "@system-service" in s["SystemCallFilter"]
    assert s["ProtectKernelTunables"] == ["yes"]
    assert "-/sys/devices/system/cpu" in s["ReadWritePaths"]  # governor writes, see README
    assert s["StateDirectory"] == ["rotwatchd"]


def test_the_page_comes_through_a_socket_systemd_holds_not_through_the_network() -> None:
    """The service keeps every network restriction; the socket unit (same name, so systemd
    passes its socket to the service) listens on loopback, and the service config serves it."""
    service, sock = unit_settings(UNIT.read_text()), unit_settings(SOCKET.read_text())
    assert service["PrivateNetwork"] == ["yes"] and service["IPAddressDeny"] == ["any"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert "Sockets" not in service and "Service" not in sock  # paired by name
    assert sock["ListenStream"] == ["127.0.0.1:8750"] and sock["Accept"] == ["no"]
    assert sock["WantedBy"] == ["sockets.target"]
    import yaml

    web = yaml.safe_load((SYSTEMD / "rotwatchd.yaml").read_text())["web"]
    assert web == {"listen": "systemd", "token_file": None}
    readme = (SYSTEMD / "README.md").read_text()
    assert "install -Dm644 systemd/rotwatchd.socket   /etc/systemd/system/rotwatchd.socket" \
        in readme
    assert "systemctl enable --now rotwatchd.socket rotwatchd\n" in readme


@needs_systemd
def test_verify_script_passes_on_the_shipped_unit() -> None:
    result = run_verify(UNIT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   systemd-analyze verify rotwatchd.service rotwatchd.socket" in result.stdout
    level = result.stdout.split("exposure ")[1].split()[0]
    assert float(level) <= 3.0


@needs_systemd
def test_verify_script_fails_on_a_unit_systemd_would_complain_about(tmp_path: Path) -> None:
    broken = tmp_path / "rotwatchd.service"
    broken.write_text(UNIT.read_text().replace("Type=notify", "Type=notfiy"))
    result = run_verify(broken)
    assert result.returncode == 1 and "FAIL systemd-analyze verify" in result.stderr
    assert "notfiy" in result.stderr


@needs_systemd
def test_verify_script_fails_on_a_socket_systemd_would_complain_about(tmp_path: Path) -> None:
    broken = tmp_path / "rotwatchd.socket"
    broken.write_text(SOCKET.read_text().replace("ListenStream=127.0.0.1:8750",
                                                 "ListenStram=127.0.0.1:8750"))
    result = subprocess.run(["sh", str(SYSTEMD / "verify.sh"), str(UNIT), str(broken)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1 and "FAIL systemd-analyze verify" in result.stderr
    assert "ListenStram" in result.stderr


@needs_systemd
def test_verify_script_fails_when_hardening_is_removed(tmp_path: Path) -> None:
    keep = ("[", "Description", "Type", "NotifyAccess", "Exec", "WatchdogSec", "User", "Group")
    lines = [ln for ln in UNIT.read_text().splitlines() if ln.startswith(keep)]
    weak = tmp_path / "rotwatchd.service"
    weak.write_text("\n".join(lines) + "\n")
    result = run_verify(weak)
    assert result.returncode == 1 and "FAIL systemd-analyze security" in result.stderr


_SERVICE_USER = """
import json, os, sys
from pathlib import Path
from rotwatchd.power.governor import GovernorControl
uid, gid = int(sys.argv[2]), int(sys.argv[3])
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
report = GovernorControl(Path(sys.argv[1])).apply("powersave")
print(json.dumps({"changed": report.changed, "failed": report.failed}))
"""


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="chown in a throwaway root and setuid need root")
def test_tmpfiles_rule_lets_the_service_user_switch_governors() -> None:
    """Apply sysusers.d + tmpfiles.d to a throwaway root holding a fake cpufreq tree, then switch
    governors as the rotwatchd user: allowed on the files the rule covers, refused before."""
    with tempfile.TemporaryDirectory(prefix="rotwatchd-root-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        for part in ("usr/lib/sysusers.d", "usr/lib/tmpfiles.d", "etc"):
            (root / part).mkdir(parents=True)
        shutil.copy(SYSTEMD / "rotwatchd.sysusers", root / "usr/lib/sysusers.d/rotwatchd.conf")
        shutil.copy(SYSTEMD / "rotwatchd.tmpfiles", root / "usr/lib/tmpfiles.d/rotwatchd.conf")
        cpu = make_cpufreq_tree(root / "sys/devices/system/cpu", ("schedutil",) * 2)
        for f in cpu.glob("cpufreq/policy*/scaling_governor"):
            f.chmod(0o644)  # the kernel's default: root only
        for d in [root / "sys", *(p for p in (root / "sys").rglob("*") if p.is_dir())]:
            d.chmod(0o755)
        subprocess.run(["systemd-sysusers", f"--root={root}", "rotwatchd.conf"],
                       check=True, capture_output=True, timeout=60)
        group = (root / "etc/group").read_text().split("\n")[0].split(":")
        passwd = (root / "etc/passwd").read_text().split("\n")[0].split(":")
        assert group[0] == passwd[0] == "rotwatchd"
        uid, gid = passwd[2], group[2]
        env = dict(os.environ, PYTHONPATH=str(REPO))

        def as_service_user() -> str:
            child = subprocess.run(
                [sys.executable, "-c", _SERVICE_USER, str(cpu), uid, gid],
                capture_output=True, text=True, timeout=60, env=env, check=True,
            )
            return child.stdout

        assert '"policy0": "Permission denied"' in as_service_user()  # before the rule
        made = subprocess.run(["systemd-tmpfiles", "--create", f"--root={root}", "rotwatchd.conf"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert made.returncode == 0, made.stderr
        assert '"failed": {}' in as_service_user()
        assert read_governors(cpu) == ["powersave", "powersave"]


def test_service_config_is_valid_for_the_daemon(tmp_path: Path) -> None:
    """systemd/rotwatchd.yaml passes the daemon's own validation, with its absolute paths
    moved under a temporary root (they do not exist on the test machine)."""
    from rotwatchd.config import load_config

    text = (SYSTEMD / "rotwatchd.yaml").read_text()
    for absolute in ("/srv/rotwatchd", "/var/lib/rotwatchd", "/sys/devices/system/cpu"):
        assert absolute in text
        text = text.replace(absolute, str(tmp_path / absolute.lstrip("/")))
    (tmp_path / "srv/rotwatchd/inbox").mkdir(parents=True)
    (tmp_path / "var/lib/rotwatchd").mkdir(parents=True)
    config_file = tmp_path / "rotwatchd.yaml"
    config_file.write_text(text)
    config = load_config(config_file)
    assert config.state_dir == tmp_path / "var/lib/rotwatchd"
    assert config.power.idle_timeout == 60.0 and config.power.idle_governor == "powersave"
    assert config.power.cpufreq_path == tmp_path / "sys/devices/system/cpu"
    assert config.web.listen == "systemd" and config.web.token is None


def test_governors_found_before_a_watchdog_kill_are_restored_after_the_restart(
        tmp_path: Path) -> None:
    """The unit's RuntimeDirectory (kept over restarts) holds the governors found at start: a
    daemon killed while asleep leaves powersave behind, and the restarted one must put back
    what was there before, not the powersave it finds."""
    from rotwatchd.power.governor import GovernorControl
    from rotwatchd.power.runtime import originals_file

    s = unit_settings(UNIT.read_text())
    assert s["RuntimeDirectory"] == ["rotwatchd"]
    assert s["RuntimeDirectoryPreserve"] == ["restart"]
    runtime = tmp_path / "run/rotwatchd"
    runtime.mkdir(parents=True)
    saved = originals_file({"RUNTIME_DIRECTORY": f"{runtime}:/run/other"})
    assert saved == runtime / "governors.json"
    assert originals_file({}) is None
    cpu = make_cpufreq_tree(tmp_path / "cpu", ("schedutil", "ondemand"))

    killed = GovernorControl(cpu, saved)
    killed.remember_originals()
    assert killed.apply("powersave").ok  # asleep, then killed: no restore
    restarted = GovernorControl(cpu, saved)
    assert restarted.remember_originals() == {"policy0": "schedutil", "policy1": "ondemand"}
    assert restarted.apply("powersave").ok and restarted.restore().ok
    assert read_governors(cpu) == ["schedutil", "ondemand"]
    assert not saved.exists()  # stopped cleanly: the next start reads the governors afresh
    (cpu / "cpufreq/policy0/scaling_governor").write_text("performance\n")
    assert GovernorControl(cpu, saved).remember_originals()["policy0"] == "performance"
