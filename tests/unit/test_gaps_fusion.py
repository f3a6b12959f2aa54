"""Fusion through the real scene network: a strong face that contradicts a sure scene sends the
photo to review (never a wrong turn), an agreeing one does not; closing the classifier closes
its cues; the adaptive backend's escalation band at its edges. The face cue is the injected
part (FaceScores), so the test chooses what it says."""

from __future__ import annotations

import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.model.base import CORRECTIONS
from rotwatchd.model.fusion import FusedClassifier, FusionParams, escalates, fuse
from rotwatchd.model.scene import SceneClassifier
from rotwatchd.service.decision import Facts, decide

DOCUMENT = (FIXTURES_DIR / "orientation" / "documents"
            / "synthetic-00013.jpg")  # the scene network is sure it is upright


class FaceAt:
    """A face cue that finds one clear face needing ``correction``."""

    def __init__(self, correction: int, score: float = 0.95) -> None:
        self.correction, self.score, self.closed = correction, score, False

    def scores(self, image: Image.Image) -> tuple[float, float, float, float]:
        scores = [0.05, 0.05, 0.05, 0.05]
        scores[CORRECTIONS.index(self.correction)] = self.score
        return (scores[0], scores[1], scores[2], scores[3])

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def document() -> Image.Image:
    with Image.open(DOCUMENT) as raw:
        return raw.convert("RGB")


def test_a_face_contradicting_a_sure_scene_sends_the_photo_to_review(
        document: Image.Image) -> None:
    face = FaceAt(180)
    clf = FusedClassifier(SceneClassifier(threads=1), face)
    try:
        scene = clf.scene.probabilities(document)
        assert max(scene) > 0.9 and scene.index(max(scene)) == 0
        pred = clf.predict(document)
    finally:
        clf.close()
    assert ("disagreement", 1.0) in pred.cues
    assert 0.0 < pred.confidence <= FusionParams().disagreement_cap
    decision = decide(Facts(prediction=pred), min_confidence=clf.min_confidence,
                      max_pixels=10**8)
    assert decision.action == "review"
    assert face.closed  # closing the classifier released the face model too


def test_an_agreeing_face_keeps_the_photo_decided(document: Image.Image) -> None:
    clf = FusedClassifier(SceneClassifier(threads=1), FaceAt(0))
    try:
        pred = clf.predict(document)
    finally:
        clf.close()
    assert pred.correction == 0 and pred.confidence > 0.9
    assert ("face", 0.95) in pred.cues and ("face_correction", 0.0) in pred.cues
    assert not any(name == "disagreement" for name, _ in pred.cues)


def test_the_cap_only_lowers_a_contradiction_and_never_below_zero() -> None:
    fused = fuse((0.02, 0.9, 0.04, 0.04), (0.97, 0.05, 0.05, 0.05))
    assert fused.disagreement and fused.confidence == pytest.approx(0.35)
    # a weak face (below face_strong) or an unsure scene is no contradiction: not capped
    weak = fuse((0.02, 0.9, 0.04, 0.04), (0.75, 0.05, 0.05, 0.05))
    assert not weak.disagreement and weak.correction == 90 and weak.confidence > 0.35
    unsure = fuse((0.3, 0.5, 0.1, 0.1), (0.97, 0.05, 0.05, 0.05))
    assert not unsure.disagreement and unsure.correction == 0
    low = fuse((0.25, 0.27, 0.24, 0.24), (0.05, 0.05, 0.05, 0.05))
    assert 0.0 < low.confidence < 0.35 and not low.face_used


def test_face_evidence_grows_by_band_edges() -> None:
    params = FusionParams()
    assert [params.face_evidence(s) for s in (0.69, 0.7, 0.79, 0.8, 0.89, 0.9, 1.0)] == [
        0.0, 1.0, 1.0, 3.0, 3.0, 6.0, 6.0]


def test_the_adaptive_backend_escalates_only_inside_its_band() -> None:
    assert not escalates(0.299, 0.3, 0.8)  # hopeless: review after one pass
    assert escalates(0.3, 0.3, 0.8)
    assert escalates(0.799, 0.3, 0.8)
    assert not escalates(0.8, 0.3, 0.8)  # sure enough after one pass


def test_without_a_face_nothing_is_called_a_disagreement() -> None:
    fused = fuse((0.02, 0.9, 0.04, 0.04), None)
    assert not fused.disagreement and not fused.face_used
    weak = fuse((0.02, 0.9, 0.04, 0.04), (0.5, 0.05, 0.05, 0.05))  # below every face band
    assert not weak.disagreement and not weak.face_used


def _photo(name: str, turn: int) -> Image.Image:
    """A fixture picture (``folder/file`` under the orientation fixtures) turned ``turn``."""
    from rotwatchd.evaluation.accuracy import turned

    with Image.open(DOCUMENT.parent.parent / name) as raw:
        return turned(raw.convert("RGB"), turn)


def test_an_unsure_first_pass_gets_exactly_the_four_pass_answer() -> None:
    """The adaptive backend (the default) on a photo one pass is unsure of: its answer is the
    litert-tta backend's, to the last bit, plus the cue saying it took four passes."""
    from rotwatchd.model import load_classifier

    unsure = _photo("gcompris-qt-data/explore_world_animals-00292.jpg", 90)
    adaptive, tta = load_classifier("litert-adaptive"), load_classifier("litert-tta")
    try:
        got, want = adaptive.predict(unsure), tta.predict(unsure)
    finally:
        adaptive.close()
        tta.close()
    assert (got.correction, got.confidence, got.probabilities) == (
        want.correction, want.confidence, want.probabilities)
    assert got.cues == (*want.cues, ("passes", 4.0))


def test_a_first_pass_sure_without_text_runs_the_scene_and_face_cues_once() -> None:
    from rotwatchd.model import load_classifier
    from rotwatchd.model.fusion import AdaptiveClassifier

    sure = _photo("documents/synthetic-00013.jpg", 0)
    adaptive = load_classifier("litert-adaptive")
    assert isinstance(adaptive, AdaptiveClassifier)
    try:
        pred = adaptive.predict(sure)
    finally:
        adaptive.close()
    names = [name for name, _ in pred.cues]
    assert names == ["scene", "face", "face_correction", "passes"]  # no text network pass
    assert dict(pred.cues)["passes"] == 1.0 and pred.correction == 0
    assert pred.confidence >= adaptive.escalate_below

    bare = AdaptiveClassifier(SceneClassifier(threads=1), None)  # no face or text model
    try:
        alone = bare.predict(sure)
    finally:
        bare.close()
    assert [name for name, _ in alone.cues] == ["scene", "passes"] and alone.correction == 0
