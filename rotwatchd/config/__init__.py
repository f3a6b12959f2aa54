"""Loading rotwatchd's YAML configuration into typed, validated objects.

The pipeline is ``read -> apply CLI overrides -> normalise (schema, defaults, units) -> resolve
paths -> cross-field checks``; every step adds to one list of problems, so a user sees every
mistake at once, each line naming the file and the YAML path. See ``config/schema.py`` for keys.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rotwatchd.config.schema import (
    SYSTEMD_SOCKET,
    Problem,
    default_of,
    is_loopback,
    normalise,
    parse_address,
)

BUILTIN_SOURCE = "<built-in defaults>"


class ConfigError(Exception):
    """The configuration is invalid. ``problems`` holds one formatted line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class InboxConfig:
    path: Path
    output: Path
    review: Path
    quarantine: Path
    recursive: bool = default_of("inboxes.recursive")
    polling: bool = default_of("inboxes.polling")


@dataclass(frozen=True)
class WatchConfig:
    quiet_period: float = default_of("watch.quiet_period")
    rescan_interval: float = default_of("watch.rescan_interval")
    ignore_patterns: tuple[str, ...] = default_of("watch.ignore_patterns")
    unfinished_wait: float = default_of("watch.unfinished_wait")
    poll_interval: float = default_of("watch.poll_interval")


@dataclass(frozen=True)
class ModelConfig:
    backend: str = default_of("model.backend")
    path: Path | None = default_of("model.path")
    threads: int = default_of("model.threads")
    min_confidence: float | None = default_of("model.min_confidence")  # None: the model's own
    runtime: str = default_of("model.runtime")  # model.network.RUNTIMES
    providers: tuple[str, ...] = default_of("model.providers")  # onnxruntime only


@dataclass(frozen=True)
class OutputConfig:
    mode: Literal["pixels", "tag"] = default_of("output.mode")
    original: Literal["keep", "move", "delete"] = default_of("output.original")
    done_dir: Path | None = default_of("output.done_dir")
    hardlink_upright: bool = default_of("output.hardlink_upright")


@dataclass(frozen=True)
class LimitsConfig:
    max_pixels: int = default_of("limits.max_pixels")
    max_file_size: int = default_of("limits.max_file_size")


@dataclass(frozen=True)
class PowerConfig:
    """The ``power:`` section, as the power package (rotwatchd.power) consumes it.

    idle_timeout: seconds with an empty queue before sleeping (0 disables sleep).
    idle_governor: governor written while asleep.
    active_governor: governor written on wake; None restores the governors found at start.
    cpufreq_path: sysfs root holding ``cpu*/cpufreq`` and ``cpufreq/policy*``.
    release_model_when_idle: drop the classifier while asleep and reload it on wake.
    dynamic: let the PowerManager pick balanced/performance from load while awake.
    balanced_governor / performance_governor: the two governors dynamic mode picks from.
    """

    idle_timeout: float = default_of("power.idle_timeout")
    idle_governor: str = default_of("power.idle_governor")
    active_governor: str | None = default_of("power.active_governor")
    cpufreq_path: Path = default_of("power.cpufreq_path")
    release_model_when_idle: bool = default_of("power.release_model_when_idle")
    dynamic: bool = default_of("power.dynamic")
    balanced_governor: str = default_of("power.balanced_governor")
    performance_governor: str = default_of("power.performance_governor")

    @property
    def sleep_enabled(self) -> bool:
        """False when idle_timeout is 0 or negative: the daemon then never sleeps."""
        return self.idle_timeout > 0


#: Shorter tokens are refused: the token is all that guards a page reachable from the network.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class WebConfig:
    """The local web page. ``listen`` None: no page; ``"systemd"``: the sockets systemd passes
    (whether a token is needed is known only once they are there). ``token`` is the secret
    itself (read from ``token_file`` when that is set), kept out of ``repr`` so it never
    reaches a log."""

    listen: tuple[str, int] | Literal["systemd"] | None = default_of("web.listen")
    token: str | None = field(default=default_of("web.token"), repr=False)
    token_file: Path | None = default_of("web.token_file")


@dataclass(frozen=True)
class AdaptConfig:
    """On-device adaptation (rotwatchd/adapt/runtime.py)."""

    enabled: bool = default_of("adapt.enabled")
    max_labels: int = default_of("adapt.max_labels")
    min_labels: int = default_of("adapt.min_labels")
    after_idle: float = default_of("adapt.after_idle")
    strength: float = default_of("adapt.strength")
    folds: int = default_of("adapt.folds")


@dataclass(frozen=True)
class Config:
    """A complete, validated configuration. ``source`` is the file it came from."""

    inboxes: tuple[InboxConfig, ...]
    state_dir: Path
    workers: int
    queue_size: int
    log_level: str
    watch: WatchConfig
    model: ModelConfig
    output: OutputConfig
    limits: LimitsConfig
    power: PowerConfig
    web: WebConfig = WebConfig()
    source: str = BUILTIN_SOURCE
    adapt: AdaptConfig = AdaptConfig()


def read_yaml(path: Path) -> object:
    """Parse ``path``. Raises ConfigError (one line naming the file) when unreadable or not YAML."""
    import yaml  # here: commands run without a config file never need it

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        # PyYAML's own text spans several lines (context, the line quoted, a caret): its
        # problem ("expected <block end>, but found '-'") says it in one
        what = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError([f"{path}: not valid YAML{where}: {what}"]) from None


def apply_overrides(raw: object, overrides: list[str]) -> tuple[object, list[Problem]]:
    """Apply ``key.sub=value`` strings (value parsed as YAML) on top of ``raw``."""
    problems: list[Problem] = []
    data: dict[str, Any] = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(Problem("--set", f"{item!r} is not KEY=VALUE"))
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(Problem(key, "cannot set a key inside a non-mapping"))
                break
            node = child
        else:
            import yaml

            node[parts[-1]] = yaml.safe_load(value)
    return data, problems


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _check_dir(problems: list[Problem], where: str, path: Path, must_exist: bool) -> None:
    """Existing directory, or (unless must_exist) creatable because its parent exists."""
    if path.is_dir():
        return
    if path.exists():
        problems.append(Problem(where, f"{path} exists but is not a directory"))
    elif must_exist or not path.parent.is_dir():
        problems.append(Problem(where, f"directory does not exist: {path}"))


def _inside(child: Path, parent: Path) -> bool:
    return child.resolve() == parent.resolve() or child.resolve().is_relative_to(parent.resolve())


def _build(data: dict[str, Any], base: Path, problems: list[Problem], source: str) -> Config:
    def p(value: str | None) -> Path | None:
        return _resolve(base, value)

    state_dir = p(data["state_dir"]) or base / "state"
    _check_dir(problems, "state_dir", state_dir, must_exist=False)
    inboxes: list[InboxConfig] = []
    for i, raw in enumerate(data["inboxes"]):
        here = f"inboxes[{i}]"
        if raw["path"] is None or raw["output"] is None:
            continue  # already reported as missing
        path, output = p(raw["path"]), p(raw["output"])
        assert path is not None and output is not None
        review = p(raw["review"]) or output.parent / "review"
        quarantine = p(raw["quarantine"]) or state_dir / "quarantine"
        _check_dir(problems, f"{here}.path", path, must_exist=True)
        _check_dir(problems, f"{here}.output", output, must_exist=False)
        for key in ("review", "quarantine"):  # defaults derive from already checked folders
            if raw[key] is not None:
                _check_dir(problems, f"{here}.{key}", p(raw[key]) or path, must_exist=False)
        folders = (("output", output), ("review", review), ("quarantine", quarantine))
        for name, folder in (*folders, ("state_dir", state_dir)):
            if _inside(folder, path) or _inside(path, folder):
                at = "state_dir" if name == "state_dir" else f"{here}.{name}"
                problems.append(Problem(at, f"{folder} overlaps the inbox {path}"))
        inboxes.append(InboxConfig(path, output, review, quarantine,
                                   raw["recursive"], raw["polling"]))
    for i, a in enumerate(inboxes):
        for b in inboxes[i + 1:]:
            if _inside(a.path, b.path) or _inside(b.path, a.path):
                problems.append(Problem("inboxes", f"{a.path} and {b.path} overlap"))
    out = data["output"]
    done_dir = p(out["done_dir"])
    if out["original"] == "move" and done_dir is None:
        problems.append(Problem("output.done_dir", "required when output.original is move"))
    if done_dir is not None:
        _check_dir(problems, "output.done_dir", done_dir, must_exist=False)
        for inbox in inboxes:
            if _inside(done_dir, inbox.path):
                problems.append(Problem("output.done_dir", f"{done_dir} is inside {inbox.path}"))
    model, power, watch = data["model"], data["power"], data["watch"]
    web = _web(data["web"], p(data["web"]["token_file"]), problems)
    return Config(
        inboxes=tuple(inboxes),
        state_dir=state_dir,
        workers=data["workers"],
        queue_size=data["queue_size"],
        log_level=data["log_level"],
        watch=WatchConfig(watch["quiet_period"], watch["rescan_interval"],
                          tuple(watch["ignore_patterns"]), watch["unfinished_wait"],
                          watch["poll_interval"]),
        model=ModelConfig(model["backend"], p(model["path"]), model["threads"],
                          model["min_confidence"], model["runtime"], tuple(model["providers"])),
        output=OutputConfig(out["mode"], out["original"], done_dir, out["hardlink_upright"]),
        limits=LimitsConfig(**data["limits"]),
        power=PowerConfig(**{**power, "cpufreq_path": p(power["cpufreq_path"])}),
        web=web,
        source=source,
        adapt=AdaptConfig(**data["adapt"]),
    )


def _web(raw: dict[str, Any], token_file: Path | None, problems: list[Problem]) -> WebConfig:
    """The ``web`` section: one token source, read now; none needed only on loopback."""
    listen: tuple[str, int] | Literal["systemd"] | None = None
    if raw["listen"] == SYSTEMD_SOCKET:
        listen = SYSTEMD_SOCKET
    elif raw["listen"] is not None:
        listen = parse_address(raw["listen"])
    token: str | None = raw["token"]
    where = "web.token"
    if token is not None and token_file is not None:
        problems.append(Problem("web.token_file", "set web.token or web.token_file, not both"))
    elif token_file is not None:
        where = "web.token_file"
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(Problem(where, f"cannot read {token_file}: {reason or exc}"))
            token = None
    if token is not None and len(token.strip()) < MIN_TOKEN_LENGTH:
        problems.append(Problem(where, f"the token must have at least {MIN_TOKEN_LENGTH} "
                                       "characters (e.g. python3 -c 'import secrets; "
                                       "print(secrets.token_urlsafe())')"))
        token = None
    if isinstance(listen, tuple) and token is None and not is_loopback(listen[0]):
        problems.append(Problem("web.listen", f"{raw['listen']} is not a loopback address: set "
                                              "web.token or web.token_file, or anyone who can "
                                              "reach it could see and settle your photos"))
    return WebConfig(listen, token.strip() if token else None, token_file)


def config_from_data(
    raw: object, *, base: Path, source: str, overrides: list[str] | None = None
) -> Config:
    """Validate an already parsed mapping. Relative paths resolve against ``base``.

    Raises ConfigError listing every problem as ``source: yaml.path: message``.
    """
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys"])
    raw, problems = apply_overrides(raw, overrides or [])
    data, schema_problems = normalise(raw)
    problems += schema_problems
    config = _build(data, base.absolute(), problems, source)
    if problems:
        raise ConfigError([problem.format(source) for problem in problems])
    return config


def load_config(path: Path, overrides: list[str] | None = None) -> Config:
    """Read, override, normalise, validate and cross-check ``path``. Raises ConfigError."""
    return config_from_data(read_yaml(path), base=path.absolute().parent, source=str(path),
                            overrides=overrides)


def load_state_dir(path: Path, overrides: list[str] | None = None) -> Path:
    """Only ``state_dir`` of the config at ``path`` (what ``rotwatchd status`` needs).

    A missing inbox (a share not mounted, a folder removed) is something ``status`` must show,
    not a reason to refuse: folders are not checked. Raises ConfigError for problems of the
    file itself (unreadable, not YAML, unknown keys, wrong types)."""
    raw = read_yaml(path)
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys"])
    raw, problems = apply_overrides(raw, overrides or [])
    data, schema_problems = normalise(raw)
    problems += schema_problems
    if problems:
        raise ConfigError([problem.format(str(path)) for problem in problems])
    base = path.absolute().parent
    return _resolve(base, data["state_dir"]) or base / "state"


def default_config(base: Path, overrides: list[str] | None = None) -> Config:
    """Built-in defaults (``./inbox`` -> ``./outbox``, ``./state``), creating those folders."""
    for name in ("inbox", "outbox", "state"):
        (base / name).mkdir(parents=True, exist_ok=True)
    return config_from_data({}, base=base, source=BUILTIN_SOURCE, overrides=overrides)


def ensure_dirs(config: Config) -> None:
    """Create every folder the daemon writes to (outputs, review, quarantine, state, done)."""
    folders = [config.state_dir]
    for inbox in config.inboxes:
        folders += [inbox.output, inbox.review, inbox.quarantine]
    if config.output.done_dir is not None:
        folders.append(config.output.done_dir)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
