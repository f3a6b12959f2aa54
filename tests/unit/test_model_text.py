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
from rotwatchd.model.text import (
    INPUT_SIZE,
    TEXT_MODEL,
    TILE_ASPECT,
    TextCrops,
    TextCue,
    geometric_mean,
    text_input,
)

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


def _receipt(width: int = 380, height: int = 1000) -> Image.Image:
    """A till receipt: a header and items at the top, totals at the bottom, blank between."""
    page = Image.new("RGB", (width, height), (248, 248, 244))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=18)
    top = ["CORNER SHOP  Main Street 4", "Receipt 20931  12:41", "Bread wholemeal   2.40",
           "Milk 1 l          1.15", "Apples 1.2 kg     3.05", "Coffee beans      8.90"]
    bottom = ["Subtotal         15.50", "VAT 7 %           1.01", "TOTAL EUR        15.50",
              "Card payment     15.50", "Thank you, come again"]
    for y, line in enumerate(top):
        draw.text((20, 20 + 30 * y), line, fill=(15, 15, 15), font=font)
    for y, line in enumerate(bottom):
        draw.text((20, height - 170 + 30 * y), line, fill=(15, 15, 15), font=font)
    return page


def test_text_crops_ends_are_both_ends_of_the_long_side() -> None:
    tall = Image.new("RGB", (300, 900), (0, 0, 0))
    tall.paste((255, 255, 255), (0, 0, 300, 40))  # a white band at the top
    tall.paste((128, 128, 128), (0, 860, 300, 900))  # a grey one at the bottom
    tiles = TextCrops(tall).ends
    assert tiles.shape == (2, INPUT_SIZE, INPUT_SIZE, 3) and tiles.dtype == np.float32
    # short side 300 -> 256: the first crop starts at the top, the second ends at the bottom
    assert tiles[0, 5, :, 0].min() > 200 and tiles[0, -5, :, 0].max() < 30
    assert 100 < tiles[1, -5, :, 0].min() < 160 and tiles[1, 5, :, 0].max() < 30
    wide = tall.transpose(Image.Transpose.ROTATE_90)  # the same picture lying on its side
    tiles = TextCrops(wide).ends
    assert tiles.shape == (2, INPUT_SIZE, INPUT_SIZE, 3)
    assert tiles[0, :, 5, 0].min() > 200 and 100 < tiles[1, :, -5, 0].min() < 160


def test_geometric_mean_of_crops_that_disagree_is_unsure() -> None:
    sure = np.array([0.9, 0.05, 0.03, 0.02])
    other = np.array([0.05, 0.9, 0.03, 0.02])
    assert geometric_mean(np.stack([sure, sure])) == pytest.approx(sure, abs=1e-9)
    mixed = geometric_mean(np.stack([sure, other]))
    assert mixed.sum() == pytest.approx(1.0) and mixed.max() < 0.5


def test_first_view_reads_a_receipt_whose_middle_is_blank(text_cue: TextCue) -> None:
    """The centre crop of this receipt holds no text (the network guesses, ~0.26 sure);
    the first view reads the header and the totals at its ends."""
    receipt = _receipt()
    for truth in CORRECTIONS:
        image = resave(turned(receipt, truth), "jpeg", 85)
        first = text_cue.first_view(image)
        centre = text_cue.view(text_input(image), 0)
        assert CORRECTIONS[int(np.argmax(first))] == truth and max(first) > 0.8, (truth, first)
        assert max(centre) < 0.5, centre
        views = text_cue.views(image, 4)
        assert views.shape == (4, 4) and np.allclose(views[0], first)


def test_first_view_of_a_4_by_3_picture_is_its_centre_crop(text_cue: TextCue) -> None:
    photo = _page(800, 600)  # 4:3, under TILE_ASPECT: one network pass on the centre crop
    assert 800 / 600 < TILE_ASPECT <= 1000 / 380
    assert np.array_equal(text_cue.first_view(photo), text_cue.view(text_input(photo), 0))


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
