"""The command line in-process: exit codes, one clear stderr line, output formats.

Images here carry EXIF orientation (or are broken), so no model is needed; the commands that
run the real model are covered by test_cli_e2e.py.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from helpers import MarkerClassifier, fast_config, make_photo, red_edge
from helpers.paths import REPO_ROOT
from PIL import Image

from rotwatchd.cli.main import OneLineFormatter, main
from rotwatchd.config import ensure_dirs
from rotwatchd.model import ModelError, load_classifier
from rotwatchd.service.classifier_pool import ClassifierPool
from rotwatchd.service.journal import Journal
from rotwatchd.service.processor import Processor

EXAMPLE = REPO_ROOT / "config" / "rotwatchd.yaml"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "check", "fix", "status", "config", "eval", "bench"):
        assert command in out


def test_config_check_ok_and_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inbox").mkdir()
    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLE.read_text())
    assert main(["config", "check", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: OK"

    bad = tmp_path / "bad.yaml"
    bad.write_text("inboxes: [{path: ./inbox, output: ./out, colour: red}]\nworkers: 0\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{bad}: inboxes[0].colour: unknown key (known here: output, path, polling, "
                   "quarantine, recursive, review)",
                   f"{bad}: workers: must be at least 1, got 0"]


def test_config_keys_lists_types_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    assert "quiet_period (duration, default 2.0):" in out
    assert "min_confidence (float, default None):" in out


def test_check_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tagged = make_photo(tmp_path / "tagged.jpg", exif_orientation=8)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    assert main(["check", "--json", str(tagged), str(broken), str(tmp_path / "gone.jpg")]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"path": str(tagged), "correction": 270, "confidence": 1.0,
                        "source": "exif", "decision": "rotate"}
    assert lines[1]["path"] == str(broken) and lines[1]["error"] == "not-an-image"
    assert lines[2]["error"] == "not-a-file"


def test_check_plain_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tagged = make_photo(tmp_path / "t.jpg", exif_orientation=3)
    assert main(["check", str(tagged)]) == 0
    assert capsys.readouterr().out.strip() == \
        f"{tagged}: rotate correction 180 (confidence 1.000, exif)"


def test_fix_writes_upright_copies_with_progress(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    for i, tag in enumerate((3, 6, 8)):
        make_photo(src / "sub" / f"p{i}.jpg", exif_orientation=tag, seed=i)
    (src / "bad.jpg").write_bytes(b"broken")
    (src / "half.jpg.part").write_bytes(b"ignored")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert main(["fix", str(src), "-o", str(tmp_path / "out")]) == 1  # bad.jpg failed
    err = capsys.readouterr().err
    assert "4/4" in err and "3 written, 0 to review, 1 failed" in err
    for i in range(3):
        with Image.open(tmp_path / "out" / "sub" / f"p{i}.jpg") as im:
            assert red_edge(im)[0] == "top"
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "out" / "bad.jpg").exists()


def test_status_without_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 3
    assert "never run" in capsys.readouterr().err


def test_unknown_model_backend_is_one_clear_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "c.yaml"
    config.write_text("inboxes: [{path: ./inbox, output: ./out}]\nmodel: {backend: nope}\n")
    plain = make_photo(tmp_path / "plain.jpg")
    assert main(["check", "-c", str(config), str(plain)]) == 2  # refused with the config
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"{config}: model.backend: 'nope' is not one of: auto, ")
    with pytest.raises(ModelError, match="unknown model backend 'nope'"):
        load_classifier("nope")  # the registry still names it when called directly


def test_eval_and_bench_forward_their_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("eval", "bench"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])  # the model tools' own argparse answers
        assert done.value.code == 0
        assert f"rotwatchd {command}" in capsys.readouterr().out


def test_a_file_name_cannot_split_or_forge_a_log_line(tmp_path: Path) -> None:
    """The daemon's log format escapes control characters in messages: a file named with a
    newline and a fake log line is quarantined with one line that names it escaped."""
    config = fast_config(tmp_path)
    ensure_dirs(config)
    inbox = config.inboxes[0]
    name = "junk.jpg\n2026-01-01 00:00:00,000 ERROR rotwatchd.service.journal: forged\r.jpg"
    (inbox.path / name).write_bytes(b"not a picture at all\n" * 10)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("rotwatchd")
    logger.addHandler(handler)
    try:
        with Journal(config.state_dir) as journal:
            processor = Processor(config, journal, ClassifierPool(MarkerClassifier))
            result = processor.process(inbox.path / name, inbox)
    finally:
        logger.removeHandler(handler)
    assert result.outcome == "quarantined"
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("WARNING rotwatchd.service.processor: quarantined")
    assert ("junk.jpg\\n2026-01-01 00:00:00,000 ERROR rotwatchd.service.journal: forged\\r.jpg"
            in lines[0])


def test_status_shows_a_hostile_file_name_on_one_line() -> None:
    from rotwatchd.service.status import format_status

    text = format_status({"running": False, "counts": {"error": 1},
                          "last_errors": [{"path": "/in/a\nforged line\x1b[2J.jpg",
                                           "detail": "unreadable", "at": 0}]})
    assert "\x1b" not in text and "forged line" in text
    assert not any(line.startswith("forged line") for line in text.splitlines())


def test_a_stopped_daemons_status_does_not_show_its_last_power_state_as_current() -> None:
    from rotwatchd.service.status import format_status

    document = {"power": {"state": "asleep", "governor": "powersave"}, "counts": {}}
    stopped = format_status({**document, "running": False}).splitlines()
    assert "power when it stopped: state asleep, governor powersave" in stopped
    running = format_status({**document, "running": True, "pid": 1}).splitlines()
    assert "power: state asleep, governor powersave" in running
