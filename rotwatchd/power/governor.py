"""The one module that reads and writes cpufreq sysfs.

Linux exposes one ``scaling_governor`` file per cpufreq *policy* (a group of CPUs that share a
clock). It is reachable as ``<root>/cpufreq/policyN/scaling_governor`` and, through a symlink, as
``<root>/cpuN/cpufreq/scaling_governor``. :class:`GovernorControl` finds every policy under a
configurable root (``power.cpufreq_path``, default ``/sys/devices/system/cpu``; tests point it at
a fake tree), remembers the governors it found, switches them, and puts them back.

Everything that can go wrong here (no cpufreq driver, a read-only sysfs, a governor the driver
does not offer, a write refused with EACCES/EBUSY/EINVAL) is a reason to save less power, never a
reason to stop processing photos: each problem is logged once and the daemon carries on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rotwatchd.power.policy import plan_governor_writes

DEFAULT_CPUFREQ_PATH = Path("/sys/devices/system/cpu")

log = logging.getLogger(__name__)

_POLICY_RE = re.compile(r"^policy\d+$")
_CPU_RE = re.compile(r"^cpu\d+$")


@dataclass(frozen=True)
class CpufreqPolicy:
    """One writable frequency domain: its ``scaling_governor`` file and what it accepts."""

    name: str  # "policy0" or "cpu0": used in log lines and the status JSON
    governor_file: Path
    available: frozenset[str]  # empty when scaling_available_governors is missing/unreadable


@dataclass
class GovernorReport:
    """What one :meth:`GovernorControl.apply` call did, for logs, tests and the status JSON."""

    changed: dict[str, str] = field(default_factory=dict)  # policy name -> new governor
    unchanged: list[str] = field(default_factory=list)  # already on the wanted governor
    skipped: dict[str, str] = field(default_factory=dict)  # policy name -> reason
    failed: dict[str, str] = field(default_factory=dict)  # policy name -> error text

    @property
    def ok(self) -> bool:
        """True when every policy now runs the wanted governor."""
        return not self.skipped and not self.failed


def discover_policies(root: Path) -> list[CpufreqPolicy]:
    """Find every cpufreq policy under *root* (a ``/sys/devices/system/cpu``-like folder).

    ``cpufreq/policy*`` entries are preferred; ``cpu*/cpufreq`` entries that resolve to the same
    real directory are dropped so each domain is written exactly once. Returns an empty list when
    the tree has no cpufreq at all (containers, VMs, some ARM boards). Never raises for a missing
    or unreadable tree.
    """
    candidates: list[tuple[str, Path]] = []
    try:
        policy_dir = root / "cpufreq"
        if policy_dir.is_dir():
            candidates += [
                (p.name, p)
                for p in sorted(policy_dir.iterdir(), key=_natural)
                if _POLICY_RE.match(p.name)
            ]
        if root.is_dir():
            candidates += [
                (c.name, c / "cpufreq")
                for c in sorted(root.iterdir(), key=_natural)
                if _CPU_RE.match(c.name)
            ]
    except OSError as exc:
        log.debug("cannot list %s: %s", root, exc)
        return []
    seen: set[Path] = set()
    policies: list[CpufreqPolicy] = []
    for name, directory in candidates:
        governor_file = directory / "scaling_governor"
        if not governor_file.is_file():
            continue
        real = governor_file.resolve()
        if real in seen:
            continue
        seen.add(real)
        policies.append(CpufreqPolicy(name, governor_file, _read_available(directory)))
    return policies


def _natural(path: Path) -> tuple[str, int]:
    """Sort key that puts cpu2 before cpu10."""
    match = re.match(r"^(\D+)(\d+)$", path.name)
    return (match.group(1), int(match.group(2))) if match else (path.name, -1)


def _read_available(directory: Path) -> frozenset[str]:
    try:
        return frozenset((directory / "scaling_available_governors").read_text().split())
    except OSError:
        return frozenset()


class GovernorControl:
    """Reads, switches and restores the CPU frequency governors under one sysfs root.

    Thread-safe: the SleepController and the PowerManager both call :meth:`apply`. The
    governors found by the first :meth:`remember_originals` call are what :meth:`restore` writes
    back, however many switches happen in between.

    With ``originals_file`` (systemd's ``$RUNTIME_DIRECTORY``, kept across restarts) they also
    outlive a daemon that is killed before it can restore them (the watchdog, a crash): the
    restarted daemon restores those, not the idle governor it finds. A successful restore
    removes the file.
    """

    def __init__(self, root: Path = DEFAULT_CPUFREQ_PATH,
                 originals_file: Path | None = None) -> None:
        self.root = Path(root)
        self.originals_file = originals_file
        self._lock = threading.Lock()
        self._policies: list[CpufreqPolicy] | None = None
        self._originals: dict[str, str] = {}
        self._logged: set[str] = set()
        self.problems: list[str] = []  # one line per distinct problem, for the status JSON

    # -- discovery -------------------------------------------------------------------------
    @property
    def policies(self) -> list[CpufreqPolicy]:
        """The policies found under the root (discovered once, lazily)."""
        with self._lock:
            return list(self._discover())

    def _discover(self) -> list[CpufreqPolicy]:
        if self._policies is None:
            self._policies = discover_policies(self.root)
            if not self._policies:
                self._problem(
                    "no-cpufreq",
                    f"no cpufreq governors under {self.root}: power saving by governor is off",
                )
        return self._policies

    @property
    def usable(self) -> bool:
        """True when at least one policy exists (it may still refuse writes)."""
        return bool(self.policies)

    def current(self) -> dict[str, str]:
        """Map policy name -> governor as read now; unreadable policies are left out."""
        with self._lock:
            return self._read_all()

    def _read_all(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for policy in self._discover():
            try:
                result[policy.name] = policy.governor_file.read_text().strip()
            except OSError as exc:
                self._problem(f"read:{policy.name}", f"cannot read {policy.governor_file}: {exc}")
        return result

    def remember_originals(self) -> dict[str, str]:
        """Record the governors in force now as the ones to restore; idempotent.

        Returns the remembered mapping (policy name -> governor).
        """
        with self._lock:
            if not self._originals:
                self._originals = self._load_originals() or self._read_all()
                self._save_originals()
            return dict(self._originals)

    def _load_originals(self) -> dict[str, str]:
        if self.originals_file is None:
            return {}
        try:
            saved = json.loads(self.originals_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(saved, dict) or not all(isinstance(v, str) for v in saved.values()):
            return {}
        log.info("power: the previous run was stopped before it restored the governors; "
                 "restoring the ones it found: %s", saved)
        return saved

    def _save_originals(self) -> None:
        if self.originals_file is None or not self._originals:
            return
        try:
            self.originals_file.write_text(json.dumps(self._originals))
        except OSError as exc:
            self._problem("save-originals", f"cannot keep the original governors in "
                          f"{self.originals_file} ({exc.strerror}); a crash would leave "
                          "the idle governor in force")

    @property
    def originals(self) -> dict[str, str]:
        """The governors :meth:`restore` will write back (empty before remember_originals)."""
        with self._lock:
            return dict(self._originals)

    # -- writing ---------------------------------------------------------------------------
    def apply(self, wanted: str | dict[str, str]) -> GovernorReport:
        """Switch every policy to *wanted* (one name, or a per-policy mapping).

        A policy whose ``scaling_available_governors`` does not list the governor is skipped
        with one logged warning; a refused write is logged once per policy and error. Never
        raises for sysfs problems. Returns a :class:`GovernorReport`.
        """
        with self._lock:
            policies = self._discover()
            current = self._read_all()
            plan = plan_governor_writes(
                {p.name: p.available for p in policies}, current, wanted
            )
            report = GovernorReport(unchanged=list(plan.unchanged), skipped=dict(plan.skipped))
            for name, reason in plan.skipped.items():
                self._problem(f"skip:{name}:{reason}", f"{name}: {reason}; left as it is")
            by_name = {p.name: p for p in policies}
            for name, governor in plan.writes.items():
                error = _write(by_name[name].governor_file, governor)
                if error is None:
                    report.changed[name] = governor
                else:
                    report.failed[name] = error
                    self._problem(
                        f"write:{name}:{error}",
                        f"cannot set {name} governor to {governor!r} ({error}); "
                        "see systemd/README.md for granting the service write access",
                    )
            return report

    def restore(self) -> GovernorReport:
        """Write the remembered original governors back. A no-op before remember_originals."""
        originals = self.originals
        if not originals:
            return GovernorReport()
        report = self.apply(originals)
        if report.ok and self.originals_file is not None:
            self.originals_file.unlink(missing_ok=True)
        return report

    def _problem(self, key: str, message: str) -> None:
        """Log *message* once per distinct *key* (callers hold the lock or are single-threaded)."""
        if key in self._logged:
            return
        self._logged.add(key)
        self.problems.append(message)
        log.warning("power: %s", message)


def _write(path: Path, governor: str) -> str | None:
    """Write one governor name; return None on success or a short error text."""
    try:
        # O_TRUNC without O_CREAT, as `echo powersave > scaling_governor` does: sysfs ignores the
        # truncation, a fake tree in tests needs it, and no file the kernel lacks is ever created.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    try:
        data = governor.encode()
        if os.write(fd, data) != len(data):
            return "short write"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    finally:
        os.close(fd)
    return None
