"""The service under a booted systemd: systemd/test-boot.sh, run both ways.

The script boots a Debian bookworm root with systemd-nspawn, installs rotwatchd as
systemd/README.md says and checks start, a turned photo, reload, the watchdog, the sandbox,
the web page through rotwatchd.socket and stop (systemd/boot_checks.py). With
``ROTWATCHD_BOOT_BREAK=readwrite`` a drop-in takes the photo folders out of ``ReadWritePaths=``
and the same checks must fail. It needs root, systemd-nspawn and debootstrap (``.ci/run``
installs them) and the network for debootstrap and pip; without them the tests skip with the
reason. A cached root makes a run take about two minutes; the first build adds one to two
minutes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from urllib.parse import urlsplit

import pytest
from helpers.paths import REPO_ROOT

REPO = REPO_ROOT
SCRIPT = REPO / "systemd" / "test-boot.sh"
MIRROR = os.environ.get("ROTWATCHD_BOOT_MIRROR", "http://deb.debian.org/debian")
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=5):
            return True
    except OSError:
        return False


def why_not_bootable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, systemd-nspawn)"
    missing = [t for t in ("systemd-nspawn", "debootstrap", "nsenter") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install systemd-container debootstrap)"
    unreachable = [url for url in (MIRROR, INDEX) if not reachable(url)]
    if unreachable:
        return f"no network to {', '.join(unreachable)} (debootstrap and pip install need it)"
    return None


_CANNOT = why_not_bootable()
pytestmark = [
    pytest.mark.skipif(_CANNOT is not None, reason=_CANNOT or ""),
    pytest.mark.timeout(1200),  # a cold debootstrap on a slow mirror, then the checks
]


def run_script(**env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, timeout=1100,
                            env={**os.environ, **env}, check=False)
    if result.returncode == 2:  # the machine, not the unit: e.g. no container boots here
        lines = [ln for ln in result.stderr.splitlines() if "cannot run:" in ln]
        pytest.skip(lines[0] if lines else result.stderr[-300:])
    return result


@pytest.mark.skipif(os.environ.get("ROTWATCHD_BOOT_TEST_PASSED") == "1",
                    reason="systemd/test-boot.sh already passed in this CI run (.ci/run)")
def test_the_service_passes_every_check_under_a_booted_systemd() -> None:
    result = run_script(ROTWATCHD_BOOT_BREAK="")
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("systemctl start: active (READY=1)", "EXIF orientation 6 photos written upright",
                  "sandbox refuses", "systemctl reload (invalid)", "watchdog:",
                  "systemctl stop: Result=success", "GET http://127.0.0.1:8750/ from outside",
                  "/metrics parses as Prometheus text", "review item settled with a POST",
                  "rotwatchd.socket on 0.0.0.0:8750 and no token: no page",
                  "the README's LAN setup", "IPAddressAllow=192.0.2.0/24 + IPAddressDeny=any",
                  "a connection to rotwatchd.socket"):
        assert f"test-boot: ok   {check}" in result.stdout


def test_the_checks_fail_when_a_drop_in_makes_the_photo_folders_read_only() -> None:
    result = run_script(ROTWATCHD_BOOT_BREAK="readwrite")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "test-boot: FAIL sandbox" in result.stdout
    assert "write /srv/rotwatchd/outbox: EROFS under the unit, want ok" in result.stdout
