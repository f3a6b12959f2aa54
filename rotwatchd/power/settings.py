"""The ``power:`` section of the config as the power package consumes it.

The schema (``rotwatchd/config/``) owns validation, defaults and error messages; this dataclass
only mirrors the validated values so the power code can be built and tested without the YAML
machinery. :func:`PowerSettings.from_config` accepts the schema's section object or a plain
mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rotwatchd.power.governor import DEFAULT_CPUFREQ_PATH


@dataclass(frozen=True)
class PowerSettings:
    """Validated ``power.*`` values.

    idle_timeout: seconds with an empty queue before sleeping (0 or less disables sleep).
    idle_governor: governor written while asleep.
    active_governor: governor written on wake; None restores the governors found at start.
    cpufreq_path: sysfs root holding ``cpu*/cpufreq`` and ``cpufreq/policy*``.
    release_model_when_idle: drop the classifier while asleep and reload it on wake.
    dynamic: let the PowerManager pick balanced/performance from load while awake.
    balanced_governor / performance_governor: the two governors dynamic mode picks from.
    """

    idle_timeout: float = 60.0
    idle_governor: str = "powersave"
    active_governor: str | None = None
    cpufreq_path: Path = DEFAULT_CPUFREQ_PATH
    release_model_when_idle: bool = False
    dynamic: bool = False
    balanced_governor: str = "schedutil"
    performance_governor: str = "performance"

    @property
    def sleep_enabled(self) -> bool:
        """False when idle_timeout is 0 or negative: the daemon then never sleeps."""
        return self.idle_timeout > 0

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | object | None) -> PowerSettings:
        """Build from the schema's ``power`` section (attribute object or mapping).

        Keys the section lacks keep their defaults; unknown keys are ignored here because the
        schema already rejects them. Raises TypeError/ValueError for values of the wrong kind.
        """
        if section is None:
            return cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            if isinstance(section, Mapping):
                if f.name in section:
                    values[f.name] = section[f.name]
            elif hasattr(section, f.name):
                values[f.name] = getattr(section, f.name)
        if "cpufreq_path" in values:
            values["cpufreq_path"] = Path(values["cpufreq_path"])
        if "idle_timeout" in values:
            values["idle_timeout"] = float(values["idle_timeout"])
        if values.get("active_governor") == "":
            values["active_governor"] = None
        return cls(**values)
