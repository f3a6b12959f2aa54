"""The configuration schema: every key with its type, default and one-line description.

``normalise(raw)`` walks a parsed YAML mapping against :data:`SCHEMA`, fills defaults, converts
durations (``60s``, ``5m``, ``1h``, numbers = seconds) and sizes (``512MiB``) and collects
*every* problem as a :class:`Problem` naming the YAML path (``inboxes[0].output``). Nothing here
touches the filesystem; path existence and cross-field rules live in ``config/__init__.py``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from rotwatchd.formats.image import DEFAULT_MAX_PIXELS

Kind = Literal[
    "bool", "int", "float", "str", "path", "duration", "size", "enum", "globs", "names",
    "address", "section", "list",
]


@dataclass(frozen=True)
class Field:
    """One configuration key. ``children`` describe a ``section`` or the items of a ``list``.

    An ``enum`` takes its allowed values from ``choices``, or, when they are only known at run
    time (the registered model backends), from calling ``choices_from``.
    """

    name: str
    kind: Kind
    default: Any
    description: str
    nullable: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    children: tuple[Field, ...] = field(default=())
    choices_from: Callable[[], tuple[str, ...]] | None = None

    def allowed(self) -> tuple[str, ...]:
        """The values an ``enum`` accepts (empty for other kinds)."""
        return self.choices_from() if self.choices_from is not None else self.choices


@dataclass(frozen=True)
class Problem:
    """One validation error at a YAML path such as ``inboxes[0].output``."""

    path: str
    message: str

    def format(self, source: str) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{source}: {where}{self.message}"


def model_backends() -> tuple[str, ...]:
    """``auto`` and every backend the model registry has registered, asked when validating so
    that a backend added to the registry is accepted without touching this schema."""
    # imported here: commands decided by EXIF tags alone never load the model package
    from rotwatchd.model.registry import available_backends

    return ("auto", *available_backends())


def model_runtimes() -> tuple[str, ...]:
    """The runtimes a model can run on (``network.RUNTIMES``), asked when validating."""
    from rotwatchd.model.network import RUNTIMES  # as above

    return RUNTIMES


DEFAULT_IGNORE = (".*", "*.part", "*.tmp", "*~", "*.crdownload", "*.rwtmp", ".syncthing.*")

INBOX = (
    Field("path", "path", None, "watched folder (must exist)"),
    Field("output", "path", None, "corrected copies, same relative path and file name"),
    Field("recursive", "bool", True, "also watch subfolders"),
    Field("polling", "bool", False, "poll instead of inotify (NFS/SMB/FUSE shares)"),
    Field("review", "path", None, "low-confidence copies; default: <output>/../review",
          nullable=True),
    Field("quarantine", "path", None, "bad input is moved here; default: <state_dir>/quarantine",
          nullable=True),
)

SCHEMA: tuple[Field, ...] = (
    Field("inboxes", "list", [{"path": "./inbox", "output": "./outbox"}],
          "folders to watch, each with its own output", minimum=1, children=INBOX),
    Field("state_dir", "path", "./state", "journal (SQLite) and status.json live here"),
    Field("workers", "int", 1, "worker threads running the model", minimum=1, maximum=64),
    Field("queue_size", "int", 256, "bounded queue between watcher and workers", minimum=1),
    Field("log_level", "enum", "info", "logging threshold",
          choices=("debug", "info", "warning", "error")),
    Field("watch", "section", None, "how files are noticed", children=(
        Field("quiet_period", "duration", 2.0,
              "a file must keep size and mtime this long before it is processed", minimum=0),
        Field("rescan_interval", "duration", 3600.0,
              "full rescan of every inbox (0 = only at startup)", minimum=0),
        Field("poll_interval", "duration", 1.0,
              "how often a polled inbox (polling: true, or no inotify) is looked at",
              minimum=0.05),
        Field("ignore_patterns", "globs", list(DEFAULT_IGNORE),
              "file names matching these globs are ignored until renamed"),
        Field("unfinished_wait", "duration", 1800.0,
              "a file that looks truncated, corrupt or empty stays in the inbox until it has "
              "been unchanged this long (its writer may only be pausing); then it is "
              "quarantined", minimum=0),
    )),
    Field("model", "section", None, "orientation classifier", children=(
        Field("backend", "enum", "auto", "classifier backend; auto stands for the default one",
              choices_from=model_backends),
        Field("path", "path", None, "model file; default: the shipped model", nullable=True),
        Field("threads", "int", 1, "interpreter threads per worker", minimum=1, maximum=64),
        Field("runtime", "enum", "litert", "what runs the networks: litert (ai-edge-litert or "
              "tflite-runtime) or onnxruntime (pip install 'rotwatchd[onnx]')",
              choices_from=model_runtimes),
        Field("providers", "names", ["CPUExecutionProvider"], "onnxruntime only: execution "
              "providers in order of preference (e.g. CUDAExecutionProvider with "
              "onnxruntime-gpu)"),
        Field("min_confidence", "float", None,
              "below this the image goes to review (0 = always decide); default: the threshold "
              "calibrated for the model and backend (the model's .json)", nullable=True,
              minimum=0, maximum=1),
    )),
    Field("web", "section", None, "the local web page: review queue, status, /metrics", children=(
        Field("listen", "address", "127.0.0.1:8750", "IP:PORT the page listens on (null = no "
              "page; an address other than loopback needs a token; port 0 = any free port), "
              "or systemd: the socket systemd passes (systemd/rotwatchd.socket)",
              nullable=True),
        Field("token", "str", None, "secret every request must carry (bearer header, or "
              "?token= once, then a cookie); needed to listen beyond loopback", nullable=True),
        Field("token_file", "path", None, "file holding the token instead of web.token (read at "
              "start and at each reload)", nullable=True),
    )),
    Field("output", "section", None, "what is written", children=(
        Field("mode", "enum", "pixels", "pixels: rotate the pixels; tag: only set EXIF orientation",
              choices=("pixels", "tag")),
        Field("original", "enum", "keep", "after a successful copy: keep, move (to done_dir) or "
              "delete the original", choices=("keep", "move", "delete")),
        Field("done_dir", "path", None, "where original: move puts originals", nullable=True),
        Field("hardlink_upright", "bool", False,
              "hard-link already upright files instead of copying"),
    )),
    Field("limits", "section", None, "refuse hostile input", children=(
        Field("max_pixels", "int", DEFAULT_MAX_PIXELS, "larger images are quarantined",
              minimum=1),
        Field("max_file_size", "size", 512 * 1024**2, "larger files are quarantined", minimum=1),
    )),
    Field("power", "section", None, "idle behaviour (SleepController, governors)", children=(
        Field("idle_timeout", "duration", 60.0, "empty queue this long -> sleep", minimum=0),
        Field("idle_governor", "str", "powersave", "CPU governor while asleep"),
        Field("active_governor", "str", None, "governor when awake; default: restore the "
              "previous one", nullable=True),
        Field("cpufreq_path", "path", "/sys/devices/system/cpu", "cpufreq sysfs root"),
        Field("release_model_when_idle", "bool", False, "free the model's memory while asleep"),
        Field("dynamic", "bool", False, "switch balanced/performance by load while awake"),
        Field("balanced_governor", "str", "schedutil", "dynamic mode: light load governor"),
        Field("performance_governor", "str", "performance", "dynamic mode: heavy load governor"),
    )),
    Field("adapt", "section", None, "on-device adaptation: a personal head learned while idle "
          "from EXIF-decided photos and review answers (features only, in state_dir)",
          children=(
        Field("enabled", "bool", True, "collect labels and fit while asleep"),
        Field("max_labels", "int", 2000, "labels kept (about 20 KB each); the oldest are "
              "dropped", minimum=20),
        Field("min_labels", "int", 100, "new labels needed before the next fit (and 30 "
              "labelled photos in all)", minimum=1),
        Field("after_idle", "duration", 900.0, "asleep this long before collecting or "
              "fitting; then, with nothing due, between looks for new review answers "
              "(at least 60 s)",
              minimum=0),
        Field("strength", "float", 0.003, "pull of the personal head toward the shipped one "
              "(L2); larger = fewer changes", minimum=0),
        Field("folds", "int", 3, "the guardrail holds out each of this many parts of the "
              "labels once and judges a head fitted on the rest", minimum=2, maximum=10),
    )),
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """``60s``/``5m``/``1h``/``250ms``/``1d`` or a number (seconds) -> seconds.

    Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60s, 5m or 1h")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (use e.g. 60s, 5m, 1h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: object) -> int:
    """``512MiB``/``2GB``/``100KiB`` or a number of bytes -> bytes. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size (use e.g. 512MiB, 2GB)")
    unit = (match.group(2) or "B").upper()
    power = "BKMGT".index(unit[0])
    base = 1024 if "I" in unit else 1000
    return int(float(match.group(1)) * base**power)


#: ``web.listen`` value meaning: serve the listening socket systemd passes (socket activation).
SYSTEMD_SOCKET: Final = "systemd"


def parse_address(value: object) -> tuple[str, int]:
    """``127.0.0.1:8750``, ``0.0.0.0:8750``, ``[::1]:8750``, ``localhost:8750`` -> (host, port).

    The host is an IP address (or ``localhost``), never a name to resolve. Raises ValueError."""
    text = str(value).strip() if isinstance(value, str) else ""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not IP:PORT (e.g. 127.0.0.1:8750 or [::1]:8750)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address (use e.g. 127.0.0.1, 0.0.0.0 or "
                             "the address of one network interface)") from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is reachable only from this machine."""
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _scalar(spec: Field, value: object, where: str, problems: list[Problem]) -> object:
    """Convert one scalar; on error record a problem and return the default."""
    if value is None:
        if spec.nullable:
            return None
        problems.append(Problem(where, "must not be empty"))
        return spec.default
    try:
        result: object
        if spec.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {_type_name(value)} {value!r}")
            return value
        if spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected an integer, got {_type_name(value)} {value!r}")
            result = value
        elif spec.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"expected a number, got {_type_name(value)} {value!r}")
            result = float(value)
        elif spec.kind == "duration":
            result = parse_duration(value)
        elif spec.kind == "size":
            result = parse_size(value)
        elif spec.kind == "enum":
            allowed = spec.allowed()
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of: {', '.join(allowed)}")
            return value
        elif spec.kind == "address":
            if value != SYSTEMD_SOCKET:
                parse_address(value)
            return value.strip() if isinstance(value, str) else value
        elif spec.kind == "globs":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of file name patterns")
            return list(value)
        elif spec.kind == "names":
            if (not isinstance(value, list) or not value
                    or not all(isinstance(v, str) and v.strip() for v in value)):
                raise ValueError("expected a non-empty list of names")
            return list(value)
        else:  # str, path
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"expected a non-empty string, got {_type_name(value)} {value!r}")
            return value
    except ValueError as exc:
        problems.append(Problem(where, str(exc)))
        return spec.default
    assert isinstance(result, int | float)
    if spec.minimum is not None and result < spec.minimum:
        problems.append(Problem(where, f"must be at least {spec.minimum:g}, got {value}"))
    if spec.maximum is not None and result > spec.maximum:
        problems.append(Problem(where, f"must be at most {spec.maximum:g}, got {value}"))
    return result


def _section(
    fields: tuple[Field, ...], raw: object, where: str, problems: list[Problem]
) -> dict[str, Any]:
    prefix = f"{where}." if where else ""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(Problem(where, f"expected a mapping, got {_type_name(raw)}"))
        raw = {}
    known = {f.name for f in fields}
    for key in raw:
        if key not in known:
            hint = ", ".join(sorted(known))
            problems.append(Problem(f"{prefix}{key}", f"unknown key (known here: {hint})"))
    out: dict[str, Any] = {}
    for spec in fields:
        here = f"{prefix}{spec.name}"
        present = spec.name in raw
        value = raw.get(spec.name)
        if spec.kind == "section":
            out[spec.name] = _section(spec.children, value, here, problems)
        elif spec.kind == "list":
            out[spec.name] = _list(spec, value if present else spec.default, here, problems)
        elif not present:
            if spec.default is None and not spec.nullable:
                problems.append(Problem(here, "required key is missing"))
            out[spec.name] = spec.default
        else:
            out[spec.name] = _scalar(spec, value, here, problems)
    return out


def _list(spec: Field, raw: object, where: str, problems: list[Problem]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.append(Problem(where, f"expected a list, got {_type_name(raw)}"))
        return []
    if spec.minimum is not None and len(raw) < spec.minimum:
        problems.append(Problem(where, f"needs at least {spec.minimum:g} entry"))
    return [_section(spec.children, item, f"{where}[{i}]", problems) for i, item in enumerate(raw)]


def normalise(raw: object) -> tuple[dict[str, Any], list[Problem]]:
    """Check ``raw`` (parsed YAML) against :data:`SCHEMA`.

    Returns the mapping with defaults filled and units converted, and every problem found
    (an empty list means the structure and types are valid).
    """
    problems: list[Problem] = []
    return _section(SCHEMA, raw, "", problems), problems


def default_of(key: str) -> Any:
    """The default of ``key`` (``section.name``, ``inboxes.name`` for a per-inbox key, or a
    top-level name) in the form a loaded config holds it: durations in seconds, sizes in
    bytes, addresses as (host, port), paths as Path, lists as tuples; None stays None.

    The config's dataclasses take their defaults from here, so each default is written once.
    Raises KeyError for a key the schema does not have."""
    fields: tuple[Field, ...] = SCHEMA
    *sections, name = key.split(".")
    for section in sections:
        fields = _named(fields, section, key).children
    spec = _named(fields, name, key)
    value = spec.default
    if value is None:
        return None
    convert: dict[str, Callable[[Any], Any]] = {
        "duration": parse_duration, "size": parse_size, "path": Path, "globs": tuple,
        "names": tuple, "address": parse_address}
    return convert.get(spec.kind, lambda same: same)(value)


def _named(fields: tuple[Field, ...], name: str, key: str) -> Field:
    for spec in fields:
        if spec.name == name:
            return spec
    raise KeyError(f"no config key {key!r}")


def describe(fields: tuple[Field, ...] = SCHEMA, indent: str = "") -> list[str]:
    """One line per key, ``name (kind, default): description``, for docs and ``--help``."""
    lines: list[str] = []
    for spec in fields:
        default = "" if spec.kind in ("section", "list") else f", default {spec.default!r}"
        choices = f"; one of: {', '.join(spec.allowed())}" if spec.kind == "enum" else ""
        lines.append(f"{indent}{spec.name} ({spec.kind}{default}): {spec.description}{choices}")
        lines.extend(describe(spec.children, indent + "  "))
    return lines
