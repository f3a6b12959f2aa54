"""Configuration choices: a backend name the registry does not know is refused by
``config check`` and by a SIGHUP reload (the old config keeps working)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_photo, red_edge, wait_until
from PIL import Image
from service_process import ServiceProcess

from rotwatchd.cli import main
from rotwatchd.config import ConfigError, load_config
from rotwatchd.config_schema import SCHEMA, Field
from rotwatchd.model import OrientationClassifier, available_backends, registry

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

    def factory(model_path: Path | None, threads: int) -> OrientationClassifier:
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
