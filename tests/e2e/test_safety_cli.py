"""Configuration choices and ``fix`` guard rails: a backend name the registry does not know is
refused by ``config check`` and by a SIGHUP reload (the old config keeps working); ``fix``
refuses to write into a folder it reads, and skips files that are not images."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_photo, red_edge, wait_until
from helpers.service_process import ServiceProcess
from PIL import Image

from rotwatchd.cli.main import main
from rotwatchd.config import ConfigError, load_config
from rotwatchd.config.schema import SCHEMA, Field
from rotwatchd.model import OrientationClassifier, available_backends, registry
from rotwatchd.model.network import Runtime

pytestmark = pytest.mark.timeout(180)


def _config(tmp_path: Path, backend: str) -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    path = tmp_path / "rotwatchd.yaml"
    path.write_text("inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n"
                    f"watch: {{quiet_period: 200ms}}\nmodel: {{backend: {backend}, "
                    "min_confidence: 0}\n")
    return path


def _fields(fields: tuple[Field, ...] = SCHEMA) -> Iterator[Field]:
    for spec in fields:
        yield spec
        yield from _fields(spec.children)


# --- model.backend is an enum built from the registry ----------------------------------


def test_config_check_refuses_a_backend_typo_in_one_line_with_the_choices(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "tflite")
    assert main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    choices = ", ".join(("auto", *available_backends()))
    assert err == [f"{config}: model.backend: 'tflite' is not one of: {choices}"]
    assert "litert" in available_backends()


def test_backend_choices_follow_what_the_registry_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "probe-backend")
    with pytest.raises(ConfigError):
        load_config(config)

    def factory(model_path: Path | None, threads: int, runtime: Runtime) -> OrientationClassifier:
        raise AssertionError("validation must not load a backend")

    monkeypatch.setitem(registry._BACKENDS, "probe-backend", factory)
    assert load_config(config).model.backend == "probe-backend"
    assert main(["config", "keys"]) == 0
    keys = capsys.readouterr().out
    assert "backend (enum, default 'auto')" in keys and "probe-backend" in keys


def test_every_enum_accepts_its_default_and_backend_is_one() -> None:
    for spec in _fields():
        if spec.kind == "enum":
            assert spec.default in spec.allowed(), spec.name
    backend = next(f for f in _fields() if f.name == "backend")
    assert backend.kind == "enum" and backend.allowed() == ("auto", *available_backends())


def test_sighup_reload_refuses_a_backend_typo_and_the_old_model_keeps_working(
        tmp_path: Path) -> None:
    config = _config(tmp_path, "auto")
    daemon = ServiceProcess(config, tmp_path / "daemon.log", None)
    try:
        wait_until(lambda: daemon.check_alive() or "running:" in daemon.text(), timeout=90)
        config.write_text(config.read_text().replace("backend: auto", "backend: tflite"))
        daemon.send(signal.SIGHUP)
        wait_until(lambda: daemon.check_alive() or "reload rejected" in daemon.text(), timeout=30)
        rejected = [line for line in daemon.text().splitlines() if "reload rejected" in line]
        assert len(rejected) == 1
        assert f"{config}: model.backend: 'tflite' is not one of: auto, " in rejected[0]
        # no EXIF tag: only the (old, valid) model can decide this one
        make_photo(tmp_path / "inbox" / "turned.jpg", correction=90, size=(320, 240))
        output = tmp_path / "outbox" / "turned.jpg"
        wait_until(lambda: daemon.check_alive() or output.is_file(), timeout=90)
        with Image.open(output) as im:
            assert red_edge(im)[0] == "top"
        assert "Traceback" not in daemon.text()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.text()


# --- fix: output outside the inputs, non-images skipped ---------------------------------


@pytest.mark.parametrize("where", [".", "upright", "sub/upright"])
def test_fix_refuses_an_output_folder_inside_an_input_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], where: str) -> None:
    make_photo(tmp_path / "sub" / "p.jpg", exif_orientation=6)
    before = sorted(p for p in tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    assert main(["fix", ".", "-o", where]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rotwatchd: fix: the output folder {where} is inside the input folder .; "
                   "choose one outside it"]
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing read, nothing written


def test_fix_refuses_an_input_folder_inside_its_output_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_photo(tmp_path / "out" / "review" / "p.jpg", exif_orientation=6)
    source = tmp_path / "out" / "review"
    assert main(["fix", str(source), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"rotwatchd: fix: the input folder {source} is inside the output folder")


def test_fix_refuses_the_folder_of_an_input_file_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = make_photo(tmp_path / "p.jpg", exif_orientation=6)
    before = photo.read_bytes()
    assert main(["fix", str(photo), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"rotwatchd: fix: the output folder {tmp_path} holds the input file {photo}")
    assert photo.read_bytes() == before and sorted(tmp_path.iterdir()) == [photo]


def test_fix_sees_through_a_symlink_to_its_own_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    make_photo(src / "p.jpg", exif_orientation=3)
    (tmp_path / "alias").symlink_to(src)
    assert main(["fix", str(src), "-o", str(tmp_path / "alias" / "upright")]) == 2
    assert "is inside the input folder" in capsys.readouterr().err
    assert not (src / "upright").exists()


def test_fix_skips_files_that_are_not_images_and_counts_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    for i, tag in enumerate((3, 6)):
        make_photo(src / f"p{i}.jpg", exif_orientation=tag, seed=i)
    (src / "LICENSE").write_text("Permission is hereby granted, free of charge...\n")
    (src / "notes.txt").write_text("taken in March\n")
    (src / "docs").mkdir()
    (src / "docs" / "EMPTY").write_bytes(b"")
    assert main(["fix", str(src), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "2 written, 0 to review, 0 failed, 3 skipped (not images)" in err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # quietly
    for i in range(2):
        with Image.open(tmp_path / "out" / f"p{i}.jpg") as im:
            assert red_edge(im)[0] == "top"
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["p0.jpg", "p1.jpg"]


def test_fix_still_fails_on_a_broken_file_named_as_a_photo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    make_photo(src / "good.jpg", exif_orientation=8)
    (src / "broken.png").write_bytes(b"this was never a png")
    (src / "README").write_text("photos from the trip\n")
    assert main(["fix", str(src), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "1 written, 0 to review, 1 failed, 1 skipped (not images)" in err
    assert "broken.png" in err
