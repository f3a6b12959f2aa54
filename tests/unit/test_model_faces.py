"""The face orientation cue on real photos with the real MediaPipe detectors in models/faces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.model import CORRECTIONS, ModelError, default_model_dir
from rotwatchd.model.faces import (
    DETECTORS,
    FULL_RANGE,
    SHORT_RANGE,
    FaceCue,
    letterbox,
    rotate_clockwise,
    ssd_anchor_centres,
)

FIXTURES = FIXTURES_DIR / "faces"


@pytest.fixture(scope="module")
def cue() -> Iterator[FaceCue]:
    face_cue = FaceCue()
    yield face_cue
    face_cue.close()


def load(name: str) -> Image.Image:
    with Image.open(FIXTURES / name) as image:
        return image.convert("RGB")


def best_and_margin(scores: tuple[float, float, float, float]) -> tuple[int, float, float]:
    best = max(range(4), key=lambda i: scores[i])
    return CORRECTIONS[best], scores[best], scores[best] - sorted(scores)[-2]


@pytest.mark.parametrize("needed", CORRECTIONS)
def test_upright_rotation_scores_highest_on_a_portrait(cue: FaceCue, needed: int) -> None:
    # PIL rotates counter-clockwise: this copy needs `needed` degrees clockwise to be upright.
    turned = load("jesper.jpg").rotate(needed, expand=True)
    scores = cue.scores(turned)
    correction, best, margin = best_and_margin(scores)
    assert correction == needed, scores
    assert best >= 0.85 and margin >= 0.3, scores


@pytest.mark.parametrize("needed", CORRECTIONS)
def test_small_face_found_when_both_detectors_agree(needed: int) -> None:
    # A person sitting on a beach: the face is ~15 % of the frame, where the short-range
    # detector alone is unsure; averaging with the full-range one settles it.
    both = FaceCue(detectors=["short", "full"])
    scores = both.scores(load("anne_helene.jpg").rotate(needed, expand=True))
    both.close()
    correction, best, margin = best_and_margin(scores)
    assert correction == needed, scores
    assert best >= 0.7 and margin >= 0.2, scores


@pytest.mark.parametrize("needed", [90, 180])
def test_separate_layout_agrees(needed: int) -> None:
    separate = FaceCue(layout="separate")
    scores = separate.scores(load("jesper.jpg").rotate(needed, expand=True))
    separate.close()
    assert best_and_margin(scores)[0] == needed, scores


def test_greyscale_and_alpha_images_are_accepted(cue: FaceCue) -> None:
    for mode in ("L", "RGBA"):
        scores = cue.scores(load("jesper.jpg").convert(mode).rotate(270, expand=True))
        assert best_and_margin(scores)[0] == 270, (mode, scores)


def test_photo_without_face_scores_low(cue: FaceCue) -> None:
    for needed in CORRECTIONS:
        scores = cue.scores(load("skagen.jpg").rotate(needed, expand=True))
        assert max(scores) < 0.5, scores


def test_detection_lands_on_the_face_with_upright_keypoints(cue: FaceCue) -> None:
    detections = cue.detect(load("anne_helene.jpg"), correction=0)
    assert detections
    top = detections[0]
    x, y, w, h = top.box
    # The face sits in the upper middle of this portrait-format photo (checked by eye).
    assert 0.35 < x < 0.6 and 0.2 < y < 0.45 and 0.05 < w < 0.3, top.box
    right_eye, left_eye, _nose, mouth = top.keypoints[:4]
    assert right_eye[1] < mouth[1] and left_eye[1] < mouth[1]
    assert top.tilt is not None and abs(top.tilt) < 20


def test_sideways_face_keypoints_report_the_tilt(cue: FaceCue) -> None:
    # Turned so it needs 90 clockwise, then examined without correction: the face lies on
    # its side, and any detection on it must say so through its keypoints.
    sideways = load("jesper.jpg").rotate(90, expand=True)
    tilts = [d.tilt for d in cue.detect(sideways, correction=0, min_score=0.3)]
    assert tilts, "the detector should still see something of a sideways close-up"
    assert all(t is not None and abs(t) > 35 for t in tilts), tilts


@pytest.mark.parametrize("name", ["short", "full"])
def test_anchor_layout_matches_shipped_model_outputs(name: str) -> None:
    # Loading checks that the model emits exactly one box per generated anchor.
    FaceCue(detectors=[name]).close()


def test_anchor_centres_follow_the_ssd_grid() -> None:
    short = ssd_anchor_centres(SHORT_RANGE)
    assert short.shape == (896, 2)  # 16x16 cells x 2 anchors + 8x8 cells x 6 anchors
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16]) and np.allclose(short[1], short[0])
    assert np.allclose(short[512], [0.5 / 8, 0.5 / 8])
    full = ssd_anchor_centres(FULL_RANGE)
    assert full.shape == (2304, 2) and np.allclose(full[-1], [47.5 / 48, 47.5 / 48])
    # pose_detection (optional, not shipped) emits 2254 boxes: 28x28x2 + 14x14x2 + 7x7x6.
    assert ssd_anchor_centres(DETECTORS["pose"]).shape == (2254, 2)


def test_letterbox_pads_instead_of_stretching() -> None:
    wide = Image.new("RGB", (200, 100), (255, 255, 255))
    square = letterbox(wide, 128)
    assert square.shape == (128, 128, 3)
    assert np.all(square[:32] == -1.0) and np.all(square[96:] == -1.0)
    assert np.allclose(square[32:96], 1.0)
    # A half-height box (used to pack two rotations in one input) keeps the aspect too.
    strip = letterbox(wide, 128, 64)
    assert strip.shape == (64, 128, 3) and np.allclose(strip, 1.0)
    tall = letterbox(wide, 64, 128)
    assert tall.shape == (128, 64, 3)
    assert np.all(tall[:48] == -1.0) and np.allclose(tall[48:80], 1.0)


def test_rotate_clockwise_matches_pil() -> None:
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image = Image.fromarray(pixels)
    for correction in CORRECTIONS:
        expected = np.asarray(image.rotate(-correction, expand=True))
        got = rotate_clockwise(pixels.astype(np.float32), correction)
        assert np.array_equal(got, expected.astype(np.float32)), correction


def test_missing_model_file_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"face_detection_short_range\.tflite.*fetch_face_models"):
        FaceCue(model_dir=tmp_path)


def test_corrupt_model_file_raises_model_error(tmp_path: Path) -> None:
    (tmp_path / SHORT_RANGE.filename).write_bytes(b"not a flatbuffer" * 64)
    with pytest.raises(ModelError, match="cannot load face model"):
        FaceCue(model_dir=tmp_path)


def test_unknown_detector_or_layout_is_rejected() -> None:
    with pytest.raises(ModelError, match="unknown face detector"):
        FaceCue(detectors=["blaze"])
    with pytest.raises(ModelError, match="layout"):
        FaceCue(layout="mosaic")


def test_shipped_models_are_in_the_default_folder() -> None:
    folder = default_model_dir() / "faces"
    assert (folder / "LICENSE").read_text().lstrip().startswith("Apache License")
    readme = (folder / "README.md").read_text()
    assert SHORT_RANGE.filename in readme
