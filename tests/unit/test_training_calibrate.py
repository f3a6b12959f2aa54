"""The calibration step of the training pipeline, end to end: the shipped networks (scene, text,
faces) on real fixture photos, turned 4 ways and re-saved, give a sidecar the runtime accepts.
Several validation folders are pooled into one table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR

from rotwatchd.model import default_model_dir
from rotwatchd.model.sidecar import MODEL_FILE, ModelMeta
from training import calibrate


def _models(folder: Path) -> Path:
    """The shipped networks copied to ``folder``, without their sidecar."""
    shipped = default_model_dir()
    folder.mkdir()
    shutil.copyfile(shipped / MODEL_FILE, folder / MODEL_FILE)
    for cue in ("text", "faces"):
        shutil.copytree(shipped / cue, folder / cue)
    return folder / MODEL_FILE


def _kind_folder(folder: Path, kind: str, sources: list[Path]) -> Path:
    (folder / kind).mkdir(parents=True)
    for path in sources:
        shutil.copyfile(path, folder / kind / path.name)
    return folder


def test_calibration_writes_a_sidecar_the_runtime_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _models(tmp_path / "models")
    photos = sorted((FIXTURES_DIR / "orientation" / "gcompris-qt-data").glob("*.jpg"))[:4]
    pages = sorted((FIXTURES_DIR / "orientation" / "documents").glob("*.jpg"))[:3]
    first = _kind_folder(tmp_path / "val-a", "photos", photos)
    second = _kind_folder(tmp_path / "val-b", "documents", pages)
    _kind_folder(second, "photo", photos[:1])  # one set's "photo" is another's "photos"
    table = tmp_path / "table.npz"

    assert calibrate.main([str(model), "--val", str(first), "--val", str(second),
                           "--draws", "1", "--table", str(table)]) == 0

    # a handful of images: said once, on one line, and calibration still runs to the end
    assert capsys.readouterr().err.splitlines() == [
        "warning: only 8 validation images (fewer than 200): a 1% risk target means little "
        "on so few, the thresholds written are not to be trusted"]
    written = json.loads(model.with_suffix(".json").read_text())
    assert written["calibrated_on"].startswith(
        "realistic validation sets: 8 upright images of 2 kinds")
    with np.load(table) as cached:
        assert len(cached["truth"]) == 8 * 4  # every image turned 4 ways, one draw
        assert sorted(set(cached["group"])) == ["documents", "photo", "photos"]
        assert cached["text"].any() and (cached["faces"] >= 0).all()  # every cue ran
    meta = ModelMeta.for_model(model)  # the runtime's checks accept what it wrote
    assert meta.temperature > 0
    for mode in ("single", "tta", "cascade"):
        assert 0.0 < meta.threshold(mode) <= 1.0


def test_only_a_pooled_set_under_200_images_is_warned_of() -> None:
    assert calibrate.few_images_warning(199, 0.01) is not None
    assert calibrate.few_images_warning(200, 0.01) is None
    assert "a 2% risk target" in (calibrate.few_images_warning(50, 0.02) or "")


def test_a_validation_folder_without_images_is_refused(tmp_path: Path) -> None:
    """A mistyped --val must not leave calibration to the other sets without a word."""
    model = _models(tmp_path / "models")
    photos = sorted((FIXTURES_DIR / "orientation" / "gcompris-qt-data").glob("*.jpg"))[:1]
    first = _kind_folder(tmp_path / "val-a", "photos", photos)
    with pytest.raises(SystemExit, match="no validation images"):
        calibrate.main([str(model), "--val", str(first), "--val", str(tmp_path / "missing")])
    assert not model.with_suffix(".json").exists()


def test_a_failed_calibration_leaves_the_sidecar_as_it_was(tmp_path: Path) -> None:
    """The scene network is run with a stub sidecar while the table is built; a damaged
    validation image (or a missing model) must not leave that stub in place of the shipped
    calibration, and says what went wrong in one line."""
    model = _models(tmp_path / "models")
    shipped = (default_model_dir() / MODEL_FILE).with_suffix(".json").read_bytes()
    model.with_suffix(".json").write_bytes(shipped)
    photos = sorted((FIXTURES_DIR / "orientation" / "gcompris-qt-data").glob("*.jpg"))[:1]
    val = _kind_folder(tmp_path / "val", "photos", photos)
    damaged = val / "photos" / "zz-damaged.jpg"
    damaged.write_bytes(photos[0].read_bytes()[:300])
    with pytest.raises(SystemExit, match="left as it was: .*zz-damaged.jpg"):
        calibrate.main([str(model), "--val", str(val), "--draws", "1"])
    assert model.with_suffix(".json").read_bytes() == shipped
    missing = model.with_name("missing.tflite")
    with pytest.raises(SystemExit, match="missing.tflite: no such model file"):
        calibrate.main([str(missing), "--val", str(val), "--draws", "1"])
    assert not missing.with_suffix(".json").exists()


def test_shares_given_as_percents_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--max-escalated 50`` (meant as 50 %) would lift the latency budget without a word,
    and ``--target-risk 1`` would accept every wrong turn: both take a share, 0..1."""
    model = _models(tmp_path / "models")
    for option, value in (("--max-escalated", "50"), ("--target-risk", "1.5"),
                          ("--max-escalated", "nan"), ("--target-risk", "-0.01")):
        with pytest.raises(SystemExit) as stopped:
            calibrate.main([str(model), option, value])
        assert stopped.value.code == 2
        assert f"{option}: '{value}' is not a share between 0 and 1" in capsys.readouterr().err
    assert not model.with_suffix(".json").exists()  # nothing was started
    assert calibrate.share_arg("0.5") == 0.5 and calibrate.share_arg("0") == 0.0


def _table(scene_logits: list[list[float]], text: list[list[float]]) -> calibrate.CueTable:
    """A cue table of len(scene_logits) upright cases, each view the same (no face found)."""
    n = len(scene_logits)
    return calibrate.CueTable(
        group=np.array(["photos"] * n), name=np.array([f"c{i}" for i in range(n)]),
        truth=np.zeros(n, dtype=np.int64),
        scene_logits=np.repeat(np.array(scene_logits, np.float32)[:, None], 4, axis=1),
        text=np.repeat(np.array(text, np.float64)[:, None], 4, axis=1),
        faces=np.full((n, 4), -1.0))


def test_the_first_pass_is_simulated_skipping_the_text_network_where_the_runtime_does() -> None:
    """The adaptive backend skips the text network where the scene cue alone reaches the
    one-pass threshold (``fusion.skips_text``): calibration's cases must be those answers."""
    sure_scene_text_against = [8.0, 0.0, 0.0, 0.0], [0.02, 0.94, 0.02, 0.02]
    unsure_scene_text_for = [1.0, 0.8, 0.0, 0.0], [0.97, 0.01, 0.01, 0.01]
    table = _table([sure_scene_text_against[0], unsure_scene_text_for[0]],
                   [sure_scene_text_against[1], unsure_scene_text_for[1]])
    weights = (1.0, 0.0, 1.5)  # text weighs only past the gate (0.9), as shipped
    every_cue = calibrate.fused_cases(table, 1.0, 1, *weights)
    skipping = calibrate.fused_cases(table, 1.0, 1, *weights, skip_text_from=0.99)
    scene_alone = calibrate.fused_cases(table, 1.0, 1, 1.0, 0.0, None)
    assert every_cue[0].confidence < 0.99 <= scene_alone[0].confidence  # text pulls it down
    assert skipping[0] == scene_alone[0]  # sure without text: the text network is not run
    assert skipping[1] == every_cue[1] != scene_alone[1]  # unsure: the text network votes
    cases, below = calibrate.first_pass_cases(table, 1.0, weights, 0.01)
    assert cases == calibrate.fused_cases(table, 1.0, 1, *weights, skip_text_from=below)
