"""The text cue: the shipped text network on real document pictures, and how fusion weighs it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image, ImageDraw, ImageFont

from rotwatchd.evaluation.accuracy import resave, turned, upright_images
from rotwatchd.model import CORRECTIONS, ModelError, default_model_dir, load_classifier
from rotwatchd.model.fusion import AdaptiveClassifier, FusedClassifier, FusionParams, fuse
from rotwatchd.model.sidecar import MODEL_FILE
from rotwatchd.model.text import INPUT_SIZE, TEXT_MODEL, TextCue, text_input

FIXTURES = FIXTURES_DIR / "orientation"


def _page(width: int = 620, height: int = 860) -> Image.Image:
    """A letter-like page: a heading and left-aligned paragraphs in a scalable font."""
    page = Image.new("RGB", (width, height), (250, 250, 246))
    draw = ImageDraw.Draw(page)
    head = ImageFont.load_default(size=30)
    body = ImageFont.load_default(size=17)
    draw.text((40, 40), "Invoice 2026-118", fill=(10, 10, 10), font=head)
    sentence = ("the quick brown fox jumps over a lazy dog while payment is due within thirty "
                "days of the date shown above please quote the reference")
    words = sentence.split(" ")
    y = 110
    for line in range(30):
        n = 7 + (line * 5) % 6
        text = " ".join(words[(line * 3 + i) % len(words)] for i in range(n))
        draw.text((40, y), text.capitalize(), fill=(20, 20, 30), font=body)
        y += 24 if line % 6 != 5 else 40
    return page


@pytest.fixture(scope="module")
def text_cue() -> TextCue:
    cue = TextCue()
    yield cue
    cue.close()


def test_text_input_is_the_centre_crop_of_the_short_side_resize() -> None:
    tall = Image.new("RGB", (300, 900), (0, 0, 0))
    tall.paste((255, 255, 255), (0, 420, 300, 480))  # a white band across the middle
    arr = text_input(tall)
    assert arr.shape == (INPUT_SIZE, INPUT_SIZE, 3) and arr.dtype == np.float32
    # short side 300 -> 256 (factor 0.853): the band lands in the crop's middle rows
    middle = arr[INPUT_SIZE // 2, :, 0]
    assert middle.min() > 200 and arr[0, :, 0].max() < 30


def test_text_network_reads_every_turn_of_a_rendered_page(text_cue: TextCue) -> None:
    page = _page()
    for truth in CORRECTIONS:
        probs = text_cue.scores(resave(turned(page, truth), "jpeg", 85))
        assert CORRECTIONS[int(np.argmax(probs))] == truth, (truth, probs)
        assert sum(probs) == pytest.approx(1.0, abs=1e-3)


def test_text_network_on_fixture_documents(text_cue: TextCue) -> None:
    """Measured 24/24 on the fixture pages turned 4 ways at JPEG q90."""
    right = total = 0
    for _group, path in upright_images(FIXTURES / "documents"):
        with Image.open(path) as raw:
            upright = raw.convert("RGB")
        for truth in CORRECTIONS:
            probs = text_cue.scores(resave(turned(upright, truth), "jpeg", 90))
            right += CORRECTIONS[int(np.argmax(probs))] == truth
            total += 1
    assert right / total >= 0.95, f"{right}/{total}"


def test_four_pass_text_belief_agrees_with_one_pass_on_a_clear_page() -> None:
    cue = TextCue(passes=4)
    try:
        probs = cue.scores(turned(_page(), 270))
    finally:
        cue.close()
    assert CORRECTIONS[int(np.argmax(probs))] == 270 and max(probs) > 0.5


def test_fusion_weighs_text_against_the_scene() -> None:
    scene = (0.2, 0.5, 0.2, 0.1)
    text_agrees = (0.05, 0.85, 0.05, 0.05)
    text_disagrees = (0.85, 0.05, 0.05, 0.05)
    off = FusionParams(text_weight=0.0)
    on = FusionParams(text_weight=1.0)
    assert fuse(scene, None, off, text_disagrees).probabilities == pytest.approx(scene)
    agreeing = fuse(scene, None, on, text_agrees)
    assert agreeing.correction == 90 and agreeing.confidence > 0.9
    against = fuse(scene, None, on, text_disagrees)
    # the disagreement costs confidence: below either network's own belief in its answer
    assert against.correction == 0 and against.confidence < max(text_disagrees)
    # a lower scene weight tempers an over-confident scene network
    sure = (0.01, 0.97, 0.01, 0.01)
    assert fuse(sure, None, FusionParams(scene_weight=0.5)).confidence < 0.97


def test_the_gate_trusts_the_text_network_more_only_where_it_is_sure() -> None:
    scene = (0.4, 0.2, 0.3, 0.1)
    gated = FusionParams(scene_weight=0.5, text_weight=0.25, text_gate=0.9,
                         text_weight_sure=1.5)
    plain = replace(gated, text_weight_sure=None)
    reading = (0.02, 0.95, 0.02, 0.01)  # sure: reading text
    guessing = (0.1, 0.6, 0.2, 0.1)  # a picture without text
    assert gated.text_exponent(reading) == 1.5 and gated.text_exponent(guessing) == 0.25
    assert plain.text_exponent(reading) == 0.25
    sure = fuse(scene, None, gated, reading)
    assert sure.correction == 90 and sure.confidence > fuse(scene, None, plain, reading).confidence
    assert fuse(scene, None, gated, guessing) == fuse(scene, None, plain, guessing)


def _model_copy(tmp_path: Path, with_text: bool, sidecar: dict[str, float]) -> Path:
    model = tmp_path / "m" / MODEL_FILE
    model.parent.mkdir()
    shutil.copyfile(default_model_dir() / MODEL_FILE, model)
    shutil.copytree(default_model_dir() / "faces", model.parent / "faces")
    if with_text:
        shutil.copytree(default_model_dir() / "text", model.parent / "text")
    meta = json.loads((default_model_dir() / "orientation.json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**meta, **sidecar}))
    return model


def test_backends_load_the_text_cue_next_to_the_model(tmp_path: Path) -> None:
    model = _model_copy(tmp_path, True, {"text_weight": 0.75, "tta_text_weight": 0.5})
    for backend in ("auto", "litert", "litert-tta"):
        clf = load_classifier(backend, model, 1)
        try:
            assert isinstance(clf, FusedClassifier) and clf.text is not None
            expected = 0.5 if backend == "litert-tta" else 0.75
            assert clf.params.text_weight == expected
            pred = clf.predict(turned(_page(), 90))
            assert pred.correction == 90
            assert ("text_correction", 90.0) in pred.cues
        finally:
            clf.close()


def test_adaptive_backend_escalates_the_text_cue_with_its_own_weights(tmp_path: Path) -> None:
    # every one-pass answer is "unsure" (threshold 1.0): the 4-pass weights must be used
    model = _model_copy(tmp_path, True, {"min_confidence": 1.0, "escalate_from": 0.0,
                                         "text_weight": 1.0, "tta_text_weight": 0.25,
                                         "tta_scene_weight": 0.5})
    clf = load_classifier("auto", model, 1)
    try:
        assert isinstance(clf, AdaptiveClassifier)
        assert clf.params_tta.text_weight == 0.25 and clf.params_tta.scene_weight == 0.5
        pred = clf.predict(turned(_page(), 180))
        assert ("passes", 4.0) in pred.cues and pred.correction == 180
    finally:
        clf.close()


def test_without_a_text_model_the_other_cues_still_answer(tmp_path: Path) -> None:
    model = _model_copy(tmp_path, False, {"text_weight": 1.0})
    clf = load_classifier("litert", model, 1)
    try:
        assert isinstance(clf, FusedClassifier) and clf.text is None
        pred = clf.predict(_page())
        assert pred.correction in CORRECTIONS
        assert not any(name.startswith("text") for name, _ in pred.cues)
    finally:
        clf.close()


def test_a_broken_text_model_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "text.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="cannot load text model"):
        TextCue(bad)
    with pytest.raises(ModelError, match="not found"):
        TextCue(tmp_path / "missing.tflite")


def test_the_shipped_text_model_is_the_documented_file() -> None:
    path = default_model_dir() / TEXT_MODEL
    readme = (path.parent / "README.md").read_text()
    assert str(path.stat().st_size) in readme
