"""The 4-pass ensemble backend (litert-tta) and the calibrated default review threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.cli.main import main
from rotwatchd.config import ModelConfig
from rotwatchd.evaluation.accuracy import resave, turned, upright_images
from rotwatchd.model import CORRECTIONS, calibrated_threshold, default_model_dir, load_classifier
from rotwatchd.model.scene import tta_average
from rotwatchd.model.sidecar import MODEL_FILE, ModelMeta
from rotwatchd.service.processor import review_threshold

FIXTURES = FIXTURES_DIR / "orientation"
STATED = json.loads((FIXTURES / "stated_accuracy.json").read_text())


def _one_hot(cls: int) -> list[float]:
    return [1.0 if i == cls else 0.0 for i in range(4)]


def test_views_that_agree_give_a_certain_belief() -> None:
    # original turned once (class 1): view m (turned m more) is class 1 + m
    views = np.array([_one_hot((1 + m) % 4) for m in range(4)])
    assert tta_average(views).tolist() == _one_hot(1)


def test_a_dissenting_view_lowers_the_belief() -> None:
    views = np.array([_one_hot(m) for m in range(4)])
    views[2] = _one_hot(0)  # the upside-down view says "already upright"
    assert tta_average(views).tolist() == [0.75, 0.0, 0.25, 0.0]


def _photos() -> list[Image.Image]:
    out = []
    for _group, path in upright_images(FIXTURES):
        if "documents" not in path.parts:
            with Image.open(path) as raw:
                out.append(raw.convert("RGB"))
    return out


def test_ensemble_on_real_photos_is_accurate_and_turns_with_the_image() -> None:
    clf = load_classifier("litert-tta", None, 1)
    try:
        hits, spread = [], []
        for image in _photos():
            beliefs = []
            for truth in CORRECTIONS:
                pred = clf.predict(resave(turned(image, truth), "png", 0))
                hits.append(pred.correction == truth)
                # express each belief relative to the original's orientation
                beliefs.append(np.roll(pred.probabilities, -CORRECTIONS.index(truth)))
            spread.append(float(np.ptp(np.array(beliefs), axis=0).max()))
    finally:
        clf.close()
    assert np.mean(hits) >= STATED["photos"], np.mean(hits)
    # the four turns of one image are the same four views: the beliefs must agree closely
    assert np.median(spread) < 0.05, spread


def _model_copy(tmp_path: Path, sidecar: dict[str, float]) -> Path:
    model = tmp_path / "m" / MODEL_FILE
    model.parent.mkdir()
    shutil.copyfile(default_model_dir() / MODEL_FILE, model)
    meta = json.loads((default_model_dir() / "orientation.json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**meta, **sidecar}))
    return model


def test_each_backend_gets_its_own_calibrated_threshold(tmp_path: Path) -> None:
    model = _model_copy(tmp_path, {"min_confidence": 0.31, "tta_min_confidence": 0.77,
                                   "cascade_min_confidence": 0.66})
    assert calibrated_threshold("auto", model) == 0.66
    assert review_threshold(ModelConfig(path=model)) == 0.66
    assert calibrated_threshold("litert", model) == 0.31
    assert calibrated_threshold("litert-scene", model) == 0.31
    assert calibrated_threshold("litert-tta", model) == 0.77
    assert review_threshold(ModelConfig(backend="litert-tta", path=model)) == 0.77
    assert review_threshold(ModelConfig(path=model, min_confidence=0.5)) == 0.5
    shipped = ModelMeta.for_model(default_model_dir() / MODEL_FILE)
    assert review_threshold(ModelConfig()) == shipped.cascade_min_confidence


@pytest.mark.parametrize(("threshold", "decision"), [(0.0, "rotate"), (1.0, "review")])
def test_check_uses_the_model_threshold_when_config_sets_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], threshold: float,
        decision: str) -> None:
    model = _model_copy(tmp_path, {"min_confidence": threshold,
                                   "cascade_min_confidence": threshold})
    config = tmp_path / "c.yaml"
    for name in ("in", "out"):
        (tmp_path / name).mkdir()
    config.write_text(f"inboxes: [{{path: {tmp_path / 'in'}, output: {tmp_path / 'out'}}}]\n"
                      f"state_dir: {tmp_path / 'state'}\nmodel: {{path: {model}}}\n")
    _group, path = upright_images(FIXTURES)[0]
    with Image.open(path) as raw:
        photo = turned(raw.convert("RGB"), 90)
    photo.save(tmp_path / "p.png")
    assert main(["check", "--json", "-c", str(config), str(tmp_path / "p.png")]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["decision"] == decision, line
