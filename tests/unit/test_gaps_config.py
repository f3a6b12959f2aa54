"""Configuration mistakes around folders: each is one clear line naming the key, never a
traceback; folders the user sets are checked like the ones rotwatchd derives; and ``run``
without a config works again on the next start."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotwatchd.config import (
    ConfigError,
    config_from_data,
    default_config,
    ensure_dirs,
    load_config,
    load_state_dir,
)


def _problems(tmp_path: Path, raw: object, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_data(raw, base=tmp_path, source="r.yaml", overrides=overrides)
    return caught.value.problems


def test_an_inbox_without_path_is_one_clear_problem(tmp_path: Path) -> None:
    assert _problems(tmp_path, {"inboxes": [{"output": "out"}]}) == [
        "r.yaml: inboxes[0].path: required key is missing"]
    assert _problems(tmp_path, {"inboxes": [{}]}) == [
        "r.yaml: inboxes[0].path: required key is missing",
        "r.yaml: inboxes[0].output: required key is missing"]


def test_review_and_quarantine_folders_set_by_the_user_are_checked(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    problems = _problems(tmp_path, {"inboxes": [{
        "path": "inbox", "output": "out", "review": "missing/review", "quarantine": "a-file"}]})
    assert problems == [
        f"r.yaml: inboxes[0].review: directory does not exist: {tmp_path / 'missing/review'}",
        f"r.yaml: inboxes[0].quarantine: {tmp_path / 'a-file'} exists but is not a directory"]


def test_user_folders_that_can_be_created_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    config = config_from_data({"inboxes": [{"path": "inbox", "output": "out",
                                            "review": "check", "quarantine": "bad"}]},
                              base=tmp_path, source="r.yaml")
    inbox = config.inboxes[0]
    assert (inbox.review, inbox.quarantine) == (tmp_path / "check", tmp_path / "bad")
    ensure_dirs(config)
    assert inbox.review.is_dir() and inbox.quarantine.is_dir() and inbox.output.is_dir()


@pytest.mark.parametrize("key", ["review", "quarantine", "output"])
def test_a_folder_inside_the_inbox_is_refused(tmp_path: Path, key: str) -> None:
    """It would be watched: every file written there would come back as a new photo."""
    (tmp_path / "inbox").mkdir()
    inbox = {"path": "inbox", "output": "out", "review": "check", key: "inbox/sub"}
    problems = _problems(tmp_path, {"inboxes": [inbox]})
    assert problems == [f"r.yaml: inboxes[0].{key}: {tmp_path / 'inbox/sub'} overlaps the "
                        f"inbox {tmp_path / 'inbox'}"]


def test_a_state_dir_inside_the_inbox_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    problems = _problems(tmp_path, {"inboxes": [{"path": "inbox", "output": "out"}],
                                    "state_dir": "inbox/.state"})
    assert any(p.startswith("r.yaml: state_dir: ") and "overlaps the inbox" in p
               for p in problems)


def test_a_done_dir_is_checked(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    base = {"inboxes": [{"path": "inbox", "output": "out"}]}
    assert _problems(tmp_path, {**base, "output": {"original": "move",
                                                   "done_dir": "inbox/done"}}) == [
        f"r.yaml: output.done_dir: {tmp_path / 'inbox/done'} is inside {tmp_path / 'inbox'}"]
    assert _problems(tmp_path, {**base, "output": {"done_dir": "no/such/done"}}) == [
        f"r.yaml: output.done_dir: directory does not exist: {tmp_path / 'no/such/done'}"]
    config = config_from_data({**base, "output": {"original": "move", "done_dir": "done"}},
                              base=tmp_path, source="r.yaml")
    assert config.output.done_dir == tmp_path / "done"


def test_run_without_a_config_starts_again_once_its_folders_exist(tmp_path: Path) -> None:
    first = default_config(tmp_path)
    (tmp_path / "inbox" / "IMG_1.jpg").write_bytes(b"a photo waiting")
    second = default_config(tmp_path)
    assert second == first
    assert (tmp_path / "inbox" / "IMG_1.jpg").read_bytes() == b"a photo waiting"
    assert second.inboxes[0].output == tmp_path / "outbox"


def test_bad_overrides_are_named(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    raw = {"inboxes": [{"path": "inbox", "output": "out"}]}
    assert _problems(tmp_path, raw, ["workers"]) == [
        "r.yaml: --set: 'workers' is not KEY=VALUE"]
    assert _problems(tmp_path, {**raw, "workers": 2}, ["workers.count=2"]) == [
        "r.yaml: workers.count: cannot set a key inside a non-mapping"]
    assert _problems(tmp_path, raw, ["=2"]) == ["r.yaml: --set: '=2' is not KEY=VALUE"]


def test_a_config_that_is_not_a_mapping_or_cannot_be_read(tmp_path: Path) -> None:
    assert _problems(tmp_path, ["a", "list"]) == [
        "r.yaml: the top level must be a mapping of keys"]
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(missing)


def test_status_reads_the_state_dir_even_when_the_inbox_is_gone(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "rotwatchd.yaml"
    path.write_text("inboxes: [{path: /no/such/share, output: ../out}]\nstate_dir: ../var\n")
    assert load_state_dir(path).resolve() == tmp_path / "var"
    path.write_text("inboxes: [{path: /no/such/share, output: ../out}]\n")
    assert load_state_dir(path) == tmp_path / "etc" / "state"
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="top level"):
        load_state_dir(path)
    path.write_text("workers: many\n")
    with pytest.raises(ConfigError, match="workers"):
        load_state_dir(path)


def test_a_yaml_mistake_names_the_line_it_is_on(tmp_path: Path) -> None:
    path = tmp_path / "rotwatchd.yaml"
    path.write_text("workers: 1\nstate_dir: ./state\n\tqueue_size: 2\nlog_level: info\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: not valid YAML (line 3): ")


def test_the_state_dir_is_checked_like_the_other_folders(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    base = {"inboxes": [{"path": "inbox", "output": "out"}]}
    assert _problems(tmp_path, {**base, "state_dir": "no/such/state"}) == [
        f"r.yaml: state_dir: directory does not exist: {tmp_path / 'no/such/state'}"]
    assert _problems(tmp_path, {**base, "state_dir": "a-file"}) == [
        f"r.yaml: state_dir: {tmp_path / 'a-file'} exists but is not a directory"]


def test_fix_without_a_config_uses_the_settings_run_uses_without_one(tmp_path: Path) -> None:
    """``rotwatchd fix`` without ``--config`` builds its settings from the dataclasses; they
    must be the schema's defaults that ``run`` gets, or the two commands would turn,
    refuse or keep files differently."""
    from rotwatchd.config import LimitsConfig, ModelConfig, OutputConfig

    defaults = default_config(tmp_path)
    assert (ModelConfig(), LimitsConfig(), OutputConfig()) == (
        defaults.model, defaults.limits, defaults.output)


def test_a_second_start_finds_its_folders_already_there(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "out").mkdir()
    config = config_from_data({"inboxes": [{"path": "inbox", "output": "out/upright"}],
                               "output": {"original": "move", "done_dir": "done"}},
                              base=tmp_path, source="r.yaml")
    ensure_dirs(config)
    (tmp_path / "out" / "upright" / "a.jpg").write_bytes(b"an output")
    ensure_dirs(config)  # the next start
    assert (tmp_path / "out" / "upright" / "a.jpg").read_bytes() == b"an output"
    assert all(folder.is_dir() for folder in (config.state_dir, tmp_path / "done",
                                              config.inboxes[0].review,
                                              config.inboxes[0].quarantine))
