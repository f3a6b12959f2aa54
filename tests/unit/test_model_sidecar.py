"""Loading a model is explicit and its mistakes are one line: the calibration sidecar is
required and checked, and the backends are known without loading any network."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_photo

from rotwatchd.cli import main
from rotwatchd.model import ModelError, default_model_dir
from rotwatchd.model.sidecar import MODEL_FILE, ModelMeta


def _model_copy(folder: Path, sidecar: str | None) -> Path:
    """The shipped scene network copied to ``folder`` with ``sidecar`` as its .json (None:
    none at all)."""
    folder.mkdir()
    model = folder / MODEL_FILE
    shutil.copyfile(default_model_dir() / MODEL_FILE, model)
    if sidecar is not None:
        (folder / "orientation.json").write_text(sidecar)
    return model


def _check(tmp_path: Path, model: Path,
           capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``rotwatchd check`` of a turned photo with ``model``; (exit code, stderr lines)."""
    photo = make_photo(tmp_path / "p.jpg", correction=90)
    for folder in ("inbox", "outbox"):  # the default inbox and output, beside the config
        (tmp_path / folder).mkdir()
    config = tmp_path / "rotwatchd.yaml"
    config.write_text(f"model:\n  path: {model}\n  backend: litert-scene\n")
    code = main(["check", "-c", str(config), str(photo)])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(("sidecar", "says"), [
    ('{"min_confidence": 0.9', "unreadable model sidecar"),
    ('["not", "an", "object"]', "model sidecar must be a JSON object"),
    ('{"min_confidence": "high"}', "min_confidence must be a number, got 'high'"),
    ('{"min_confidence": 1.5}', "min_confidence must lie in [0, 1], got 1.5"),
    ('{"temperature": 0}', "temperature must be above 0, got 0"),
    ('{"input_size": 12.5}', "input_size must be a whole number above 0, got 12.5"),
    ('{"scene_weight": -1}', "scene_weight must not be negative, got -1"),
])
def test_a_malformed_sidecar_is_one_line_naming_the_file_and_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], sidecar: str, says: str) -> None:
    model = _model_copy(tmp_path / "model", sidecar)
    code, err = _check(tmp_path, model, capsys)
    assert code != 0 and len(err) == 1, err
    assert str(tmp_path / "model" / "orientation.json") in err[0] and says in err[0]


def test_a_model_without_its_sidecar_is_refused_not_run_on_made_up_thresholds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model_copy(tmp_path / "model", None)
    code, err = _check(tmp_path, model, capsys)
    assert code != 0 and len(err) == 1, err
    assert str(model) in err[0] and "no calibration sidecar" in err[0]
    with pytest.raises(ModelError, match="no calibration sidecar"):
        ModelMeta.for_model(model)


def test_a_partial_sidecar_takes_the_defaults_and_the_one_pass_threshold(tmp_path: Path) -> None:
    model = _model_copy(tmp_path / "model", json.dumps(
        {"min_confidence": 0.93, "text_weight_sure": None, "notes": "recorded by training"}))
    meta = ModelMeta.for_model(model)
    assert (meta.min_confidence, meta.tta_min_confidence, meta.cascade_min_confidence) == (
        0.93, 0.93, 0.93)
    assert meta.input_size == ModelMeta().input_size and meta.text_weight_sure is None


def test_the_shipped_sidecar_is_valid_and_read_as_written() -> None:
    raw = json.loads((default_model_dir() / "orientation.json").read_text())
    meta = ModelMeta.for_model(default_model_dir() / MODEL_FILE)
    assert meta.input_size == raw["input_size"]
    assert meta.threshold("cascade") == raw["cascade_min_confidence"]


def test_backend_names_and_thresholds_are_known_without_loading_a_network() -> None:
    probe = ("import sys; from rotwatchd.model import available_backends, calibrated_threshold;"
             "names = available_backends(); t = calibrated_threshold();"
             "print(names, [m for m in ('rotwatchd.model.fusion', 'rotwatchd.model.scene',"
             " 'ai_edge_litert', 'tflite_runtime', 'onnxruntime') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "['litert', 'litert-adaptive', 'litert-scene', 'litert-tta'] []"
