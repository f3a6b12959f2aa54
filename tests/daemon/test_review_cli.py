"""``rotwatchd review list|apply|keep|export`` on a queue filled by a real daemon."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import make_photo, red_edge
from PIL import Image

from rotwatchd.cli.main import main
from rotwatchd.config import load_config
from rotwatchd.service.journal import Journal

CONFIG = """\
inboxes:
  - path: inbox
    output: outbox
state_dir: state
model:
  min_confidence: 1.0
watch:
  quiet_period: 0.2
  unfinished_wait: 0
"""


def _filled(tmp_path: Path, daemon_factory: Any) -> Path:
    """A config file whose queue holds three images: needing 90, 180 and nothing."""
    config_file = tmp_path / "rotwatchd.yaml"
    config_file.write_text(CONFIG)
    (tmp_path / "inbox").mkdir()
    config = load_config(config_file)
    daemon, results = daemon_factory(config)
    for name, correction in (("a.jpg", 90), ("b.jpg", 180), ("c.jpg", 0)):
        make_photo(tmp_path / "inbox" / name, correction=correction, seed=len(name + name))
        results.wait_count(["a.jpg", "b.jpg", "c.jpg"].index(name) + 1)
    daemon.stop()
    return config_file


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_apply_keep_export(tmp_path: Path, daemon_factory: Any,
                                capsys: pytest.CaptureFixture[str]) -> None:
    config_file = str(_filled(tmp_path, daemon_factory))
    code, out, _ = _run(capsys, "review", "list", "-c", config_file)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["id", "guess", "conf", "waiting", "path"]
    assert [row.split()[-1] for row in rows] == [
        str(tmp_path / "inbox" / name) for name in ("a.jpg", "b.jpg", "c.jpg")]
    code, out, _ = _run(capsys, "review", "list", "--json", "-c", config_file)
    items = {Path(item["path"]).name: item for item in json.loads(out)}
    assert [items[n]["guess"] for n in ("a.jpg", "b.jpg", "c.jpg")] == [90, 180, 0]
    assert len(items["a.jpg"]["probabilities"]) == 4

    code, out, _ = _run(capsys, "review", "apply", str(items["a.jpg"]["id"]), "90",
                        "-c", config_file)
    assert code == 0 and "outbox/a.jpg" in out
    with Image.open(tmp_path / "outbox" / "a.jpg") as image:
        assert red_edge(image)[0] == "top"
    code, out, _ = _run(capsys, "review", "keep", str(items["c.jpg"]["id"]), "-c", config_file)
    assert code == 0
    assert (tmp_path / "outbox" / "c.jpg").read_bytes() == \
        (tmp_path / "inbox" / "c.jpg").read_bytes()

    code, out, _ = _run(capsys, "review", "list", "--json", "-c", config_file)
    assert [Path(item["path"]).name for item in json.loads(out)] == ["b.jpg"]

    code, out, _ = _run(capsys, "review", "export", "-c", config_file)
    labels = list(csv.DictReader(io.StringIO(out)))
    assert [(Path(r["path"]).name, r["guess"], r["answer"]) for r in labels] == [
        ("a.jpg", "90", "90"), ("c.jpg", "0", "0")]
    assert all(len(r["sha256"]) == 64 and float(r["p0"]) > 0 for r in labels)
    code, out, _ = _run(capsys, "review", "export", "--json", "-c", config_file)
    assert [row["answer"] for row in json.loads(out)] == [90, 0]


def test_errors_are_one_line_and_exit_1(tmp_path: Path, daemon_factory: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config_file = str(_filled(tmp_path, daemon_factory))
    code, _, err = _run(capsys, "review", "apply", "999", "90", "-c", config_file)
    assert code == 1 and err == "rotwatchd: review: no review item 999\n"
    code, out, _ = _run(capsys, "review", "list", "--json", "-c", config_file)
    first = json.loads(out)[0]["id"]
    assert _run(capsys, "review", "keep", str(first), "-c", config_file)[0] == 0
    code, _, err = _run(capsys, "review", "apply", str(first), "90", "-c", config_file)
    assert code == 1 and "already settled (0 deg)" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as bad:
        main(["review", "apply", str(first), "45", "-c", config_file])
    assert bad.value.code == 2


def test_an_empty_queue_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "rotwatchd.yaml"
    config_file.write_text(CONFIG)
    (tmp_path / "inbox").mkdir()
    code, out, _ = _run(capsys, "review", "list", "-c", str(config_file))
    assert (code, out) == (0, "nothing waiting for review\n")


@pytest.mark.parametrize("argv", [("review", "list"), ("review", "export"),
                                  ("adapt", "--json")])
def test_without_a_config_or_a_state_here_nothing_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: tuple[str, ...]) -> None:
    """Typed in a folder where rotwatchd never ran: one line, exit 3 (as `status`), and no
    ./inbox, ./outbox or ./state appear from the built-in defaults."""
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (3, "")
    assert err.splitlines() == [f"rotwatchd has never run with state in {tmp_path / 'state'} "
                                "(no rotwatchd.yaml here; give the daemon's config with -c)"]
    assert list(tmp_path.iterdir()) == []


def test_a_hostile_file_name_is_listed_on_one_line_without_its_control_characters(
        tmp_path: Path, daemon_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "rotwatchd.yaml"
    config_file.write_text(CONFIG)
    (tmp_path / "inbox").mkdir()
    daemon, results = daemon_factory(load_config(config_file))
    make_photo(tmp_path / "inbox" / "evil\nline\x1b[31mRED.jpg", correction=90)
    assert results.wait_count(1)[0].outcome == "review"
    daemon.stop()
    code, out, _ = _run(capsys, "review", "list", "-c", str(config_file))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and "\x1b" not in out
    assert lines[1].endswith("evil\\nline\\x1b[31mRED.jpg")


def test_a_confidence_under_the_threshold_never_reads_as_reaching_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At a threshold of 0.92, a photo sent to review at 0.9199 lists as 0.919, not 0.92."""
    config_file = tmp_path / "rotwatchd.yaml"
    config_file.write_text(CONFIG.replace("min_confidence: 1.0", "min_confidence: 0.92"))
    (tmp_path / "inbox").mkdir()
    config = load_config(config_file)
    photo = make_photo(tmp_path / "inbox" / "near.jpg", correction=90)
    with Journal(config.state_dir) as journal:
        journal.add_review(str(photo), "0" * 64, review_copy=str(tmp_path / "r.jpg"),
                           inbox=str(tmp_path / "inbox"), guess=90, confidence=0.9199,
                           probabilities=(0.03, 0.9199, 0.03, 0.0201),
                           reason="confidence 0.919 < 0.92")
    code, out, _ = _run(capsys, "review", "list", "-c", str(config_file))
    assert code == 0
    assert out.splitlines()[1].split()[:3] == ["1", "90", "0.919"]
