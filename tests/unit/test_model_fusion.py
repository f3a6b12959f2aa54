"""Fusion of scene probabilities and face scores, and the review decision it feeds."""

from __future__ import annotations

import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.evaluation.accuracy import turned
from rotwatchd.model import CORRECTIONS, Prediction, load_classifier
from rotwatchd.model.fusion import FusedClassifier, FusionParams, fuse
from rotwatchd.service.decision import Facts, decide

FACE_PHOTO = FIXTURES_DIR / "orientation" / "kphotoalbum"


def test_without_a_face_the_scene_decides_alone() -> None:
    scene = (0.1, 0.7, 0.1, 0.1)
    fused = fuse(scene, (0.1, 0.65, 0.05, 0.0))  # best face score below the lowest band
    assert fused.correction == 90 and not fused.face_used
    assert fused.confidence == pytest.approx(0.7)
    assert fuse(scene, None).probabilities == pytest.approx(scene)


def test_agreeing_face_raises_confidence() -> None:
    fused = fuse((0.15, 0.6, 0.15, 0.1), (0.05, 0.95, 0.1, 0.02))
    assert fused.correction == 90 and fused.face_used and not fused.disagreement
    assert fused.confidence > 0.95


def test_strong_face_overrules_an_unsure_scene() -> None:
    fused = fuse((0.3, 0.4, 0.2, 0.1), (0.9, 0.1, 0.1, 0.1))
    assert fused.correction == 0 and not fused.disagreement


def test_contradicting_cues_send_the_image_to_review() -> None:
    params = FusionParams()
    fused = fuse((0.05, 0.9, 0.03, 0.02), (0.97, 0.1, 0.05, 0.1), params)
    assert fused.disagreement
    assert fused.confidence <= params.disagreement_cap
    decision = decide(Facts(prediction=Prediction(fused.correction, fused.confidence,
                                                  fused.probabilities)),
                      min_confidence=0.6, max_pixels=10**8)
    assert decision.action == "review"


def test_fused_classifier_reports_its_cues_on_a_real_photo() -> None:
    clf = load_classifier("litert")
    assert isinstance(clf, FusedClassifier) and clf.faces is not None
    with Image.open(next(FACE_PHOTO.glob("*.jpg"))) as raw:
        image = raw.convert("RGB")
    for truth in CORRECTIONS:
        pred = clf.predict(turned(image, truth))
        names = [name for name, _ in pred.cues]
        assert names[:2] == ["scene", "face"]
        assert pred.correction in CORRECTIONS and 0.0 <= pred.confidence <= 1.0
    clf.close()


def test_below_threshold_predictions_become_review_decisions() -> None:
    """`check` marks an image "review" when the real model's confidence is under the bar."""
    clf = load_classifier("litert-scene")
    flat = Image.new("RGB", (200, 150), (128, 128, 128))  # no orientation evidence at all
    pred = clf.predict(flat)
    clf.close()
    assert pred.confidence < 0.9
    decision = decide(Facts(prediction=pred), min_confidence=0.9, max_pixels=10**8)
    assert decision.action == "review"
    sure = decide(Facts(prediction=pred), min_confidence=pred.confidence / 2, max_pixels=10**8)
    assert sure.action in ("keep", "rotate")
