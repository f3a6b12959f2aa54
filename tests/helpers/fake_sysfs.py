"""A fake cpufreq sysfs tree for the power tests (the sysfs root is injected, never patched).

Layouts mirror real kernels: ``cpu`` (only ``cpuN/cpufreq/``), ``policy`` (only
``cpufreq/policyN/``) and ``both`` (``cpufreq/policyN/`` with ``cpuN/cpufreq`` symlinked to it,
as on a current x86 or Raspberry Pi kernel).
"""

from __future__ import annotations

from pathlib import Path

AVAILABLE = "conservative ondemand userspace powersave performance schedutil"


def make_cpufreq_tree(
    root: Path,
    governors: tuple[str, ...] = ("schedutil", "schedutil"),
    *,
    layout: str = "both",
    available: str = AVAILABLE,
) -> Path:
    """Create the tree under *root* (one policy per entry in *governors*) and return *root*."""
    root.mkdir(parents=True, exist_ok=True)
    for index, governor in enumerate(governors):
        if layout == "cpu":
            directory = root / f"cpu{index}" / "cpufreq"
        else:
            directory = root / "cpufreq" / f"policy{index}"
        directory.mkdir(parents=True)
        (directory / "scaling_governor").write_text(governor + "\n")
        (directory / "scaling_available_governors").write_text(available + "\n")
        if layout == "both":
            (root / f"cpu{index}").mkdir()
            # Relative, as sysfs does, so the tree also works inside a throwaway root.
            (root / f"cpu{index}" / "cpufreq").symlink_to(f"../cpufreq/policy{index}")
    return root


def read_governors(root: Path) -> list[str]:
    """Governor of each policy, in policy order, as the kernel would report it."""
    files = sorted(root.glob("cpufreq/policy*/scaling_governor")) or sorted(
        root.glob("cpu*/cpufreq/scaling_governor")
    )
    return [f.read_text().strip() for f in files]
