"""Configuration: schema errors name file and YAML path, all at once; the example validates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT

from rotwatchd.config import ConfigError, config_from_data, default_config, load_config
from rotwatchd.config.schema import SCHEMA, describe, parse_duration, parse_size

EXAMPLE = REPO_ROOT / "config" / "rotwatchd.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    path = tmp_path / "rotwatchd.yaml"
    path.write_text(text)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_example_config_validates(tmp_path: Path) -> None:
    copy = tmp_path / "rotwatchd.yaml"
    shutil.copy(EXAMPLE, copy)
    (tmp_path / "inbox").mkdir()
    config = load_config(copy)
    assert config.inboxes[0].path == tmp_path / "inbox"
    assert config.inboxes[0].review == tmp_path / "review"
    assert config.inboxes[0].quarantine == tmp_path / "state" / "quarantine"
    assert config.watch.quiet_period == 2.0 and config.watch.rescan_interval == 3600.0
    assert config.limits.max_file_size == 512 * 1024**2
    assert config.power.idle_timeout == 60.0 and config.power.idle_governor == "powersave"


def test_example_config_mentions_every_schema_key() -> None:
    text = EXAMPLE.read_text()
    for line in describe(SCHEMA):
        key = line.strip().split(" ", 1)[0]
        assert f"{key}:" in text, key


def test_every_problem_is_reported_with_file_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, """
inboxes:
  - path: ./inbox
    output: ./missing/deeper/outbox
    recursiv: true
workers: two
queue_size: 0
colour: blue
watch: {quiet_period: soon}
model: {min_confidence: 1.5}
output: {original: shred}
limits: {max_file_size: lots}
""")
    problems = _problems(path)
    expected = [
        "inboxes[0].output: directory does not exist",
        "inboxes[0].recursiv: unknown key",
        "workers: expected an integer",
        "queue_size: must be at least 1",
        "colour: unknown key",
        "watch.quiet_period: 'soon' is not a duration",
        "model.min_confidence: must be at most 1",
        "output.original: 'shred' is not one of: keep, move, delete",
        "limits.max_file_size: 'lots' is not a size",
    ]
    for fragment in expected:
        assert any(p.startswith(f"{path}: ") and fragment in p for p in problems), fragment
    assert len(problems) == len(expected)


def test_cross_field_checks(tmp_path: Path) -> None:
    (tmp_path / "inbox" / "sub").mkdir(parents=True)
    path = _write(tmp_path, """
inboxes:
  - {path: ./inbox, output: ./inbox/out}
  - {path: ./inbox/sub, output: ./elsewhere}
output: {original: move}
""")
    problems = _problems(path)
    assert any("inboxes[0].output:" in p and "overlaps the inbox" in p for p in problems)
    assert any(p.endswith("overlap") and "inboxes:" in p for p in problems)
    assert any("output.done_dir: required when output.original is move" in p for p in problems)


def test_missing_inbox_and_required_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "inboxes:\n  - {path: ./nope}\n  - 7\n")
    problems = _problems(path)
    assert any("inboxes[0].output: required key is missing" in p for p in problems)
    assert any("inboxes[1]: expected a mapping" in p for p in problems)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "workers: 1\ninboxes: [\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: not valid YAML (line")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "photos").mkdir()
    path = tmp_path / "etc" / "rotwatchd.yaml"
    path.write_text("inboxes: [{path: ../photos, output: ../upright, review: ../check}]\n"
                    "state_dir: ../var\npower: {idle_timeout: 5m}\n")
    config = load_config(path)
    assert config.inboxes[0].path.resolve() == tmp_path / "photos"
    assert config.inboxes[0].review.resolve() == tmp_path / "check"
    assert config.state_dir.resolve() == tmp_path / "var"
    assert config.power.idle_timeout == 300.0


def test_cli_style_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = _write(tmp_path, "inboxes: [{path: ./inbox, output: ./out}]\n")
    config = load_config(path, ["workers=3", "watch.quiet_period=500ms"])
    assert config.workers == 3 and config.watch.quiet_period == 0.5
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["workers=-1"])
    assert caught.value.problems == [f"{path}: workers: must be at least 1, got -1"]


def test_builtin_defaults_create_their_folders(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    assert config.inboxes[0].path == tmp_path / "inbox" and config.inboxes[0].path.is_dir()
    assert (tmp_path / "outbox").is_dir() and (tmp_path / "state").is_dir()


@pytest.mark.parametrize(("text", "seconds"), [
    ("60s", 60.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), (12, 12.0), ("1.5h", 5400.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("512MiB", 512 * 1024**2), ("2GB", 2 * 1000**3), ("100KiB", 102400), (4096, 4096),
    ("1 gib", 1024**3)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["soon", "5 minutes", True, "-1s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_each_section_dataclass_has_exactly_the_schema_keys_and_their_defaults(
        tmp_path: Path) -> None:
    """One declaration per setting: the schema's; the dataclasses hold the same keys and take
    its defaults (what a config file that leaves a key out gets)."""
    import dataclasses

    from rotwatchd import config as cfg
    from rotwatchd.config.schema import SCHEMA, default_of

    classes = {"inboxes": cfg.InboxConfig, "watch": cfg.WatchConfig, "model": cfg.ModelConfig,
               "output": cfg.OutputConfig, "limits": cfg.LimitsConfig, "power": cfg.PowerConfig,
               "web": cfg.WebConfig, "adapt": cfg.AdaptConfig}
    sections = {spec.name: spec for spec in SCHEMA if spec.children}
    assert set(sections) == set(classes)
    for name, cls in classes.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(fields) == {child.name for child in sections[name].children}, name
        for key, f in fields.items():
            if f.default is not dataclasses.MISSING:
                assert f.default == default_of(f"{name}.{key}"), f"{name}.{key}"
    (tmp_path / "in").mkdir()
    loaded = config_from_data({"inboxes": [{"path": "in", "output": "out"}]}, base=tmp_path,
                              source="t.yaml")
    assert (loaded.watch, loaded.power, loaded.limits, loaded.adapt) == (
        cfg.WatchConfig(), cfg.PowerConfig(), cfg.LimitsConfig(), cfg.AdaptConfig())


@pytest.mark.parametrize("text", ["inboxes:\n  - path: in\n output: out\n", "a: [1, 2\n",
                                  "key: value\n\tbad: tab\n", "a: b: c\n"])
def test_yaml_that_does_not_parse_is_one_line_with_where(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rotwatchd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (line,) = caught.value.problems
    assert "\n" not in line and line.startswith(f"{path}: not valid YAML (line ")
