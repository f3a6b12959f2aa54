"""The pure decision: EXIF first, then the model, review below the threshold, bad -> quarantine."""

from __future__ import annotations

import pytest

from rotwatchd.model.base import Prediction
from rotwatchd.service.decision import (
    ORIENTATION_FOR_CORRECTION,
    Facts,
    confidence_text,
    decide,
    needs_model,
    trusted_exif,
)

LIMIT = 1_000_000


def _pred(correction: int, confidence: float) -> Prediction:
    probs = [(1 - confidence) / 3] * 4
    probs[correction // 90] = confidence
    return Prediction.from_probabilities((probs[0], probs[1], probs[2], probs[3]))


@pytest.mark.parametrize(("orientation", "correction"), [(3, 180), (6, 90), (8, 270), (2, 0),
                                                         (5, 90), (7, 270), (4, 180)])
def test_valid_exif_is_applied_without_the_model(orientation: int, correction: int) -> None:
    facts = Facts(exif_orientation=orientation, pixels=100)
    assert not needs_model(facts, LIMIT)
    d = decide(facts, min_confidence=0.6, max_pixels=LIMIT)
    assert (d.action, d.source, d.correction, d.orientation) == ("rotate", "exif", correction,
                                                                orientation)


@pytest.mark.parametrize("orientation", [None, 1])
def test_absent_or_upright_exif_asks_the_model(orientation: int | None) -> None:
    facts = Facts(exif_orientation=orientation, pixels=100)
    assert needs_model(facts, LIMIT) and not trusted_exif(orientation)
    with pytest.raises(ValueError):
        decide(facts, min_confidence=0.6, max_pixels=LIMIT)
    for correction in (0, 90, 180, 270):
        d = decide(Facts(pixels=100, prediction=_pred(correction, 0.9)), min_confidence=0.6,
                   max_pixels=LIMIT)
        assert d.source == "model" and d.correction == correction
        assert d.orientation == ORIENTATION_FOR_CORRECTION[correction]
        assert d.action == ("keep" if correction == 0 else "rotate")


def test_low_confidence_goes_to_review_and_zero_threshold_always_decides() -> None:
    facts = Facts(pixels=100, prediction=_pred(90, 0.5))
    review = decide(facts, min_confidence=0.6, max_pixels=LIMIT)
    assert review.action == "review" and review.correction == 90 and review.confidence == 0.5
    assert decide(facts, min_confidence=0.0, max_pixels=LIMIT).action == "rotate"
    # the log names the threshold exactly as calibrated (0.955 must not read "0.95" or "0.96")
    near = decide(Facts(pixels=100, prediction=_pred(90, 0.9549)), min_confidence=0.955,
                  max_pixels=LIMIT)
    assert near.action == "review" and near.reason == "confidence 0.954 < 0.955"


@pytest.mark.parametrize(("facts", "action"), [
    (Facts(problem="corrupt: bad huffman table"), "quarantine"),
    (Facts(pixels=LIMIT + 1), "quarantine"),
    (Facts(animated=True, pixels=100), "review"),
    (Facts(unsupported="JPEG2000"), "review"),
])
def test_problems_and_unsupported(facts: Facts, action: str) -> None:
    assert not needs_model(facts, LIMIT)
    assert decide(facts, min_confidence=0.6, max_pixels=LIMIT).action == action


def test_orientation_mapping_matches_the_contract() -> None:
    assert ORIENTATION_FOR_CORRECTION == {0: 1, 90: 6, 180: 3, 270: 8}


def test_a_person_s_answer_is_applied_without_the_model() -> None:
    facts = Facts(pixels=100, human_correction=270)
    assert not needs_model(facts, max_pixels=1000)
    decision = decide(facts, min_confidence=0.99, max_pixels=1000)
    assert (decision.action, decision.source, decision.correction, decision.orientation) == (
        "rotate", "human", 270, 8)
    kept = decide(Facts(pixels=100, human_correction=0), min_confidence=0.99, max_pixels=1000)
    assert (kept.action, kept.orientation) == ("keep", 1)
    broken = decide(Facts(problem="corrupt", human_correction=90), min_confidence=0.99,
                    max_pixels=1000)
    assert broken.action == "quarantine"


@pytest.mark.parametrize(("confidence", "text"), [
    (0.9199, "0.919"), (0.917, "0.917"), (0.92, "0.920"), (0.29, "0.290"), (0.57, "0.570"),
    (0.99999, "0.999"), (1.0, "1.000"), (0.0, "0.000")])
def test_confidence_text_rounds_down_to_three_decimals(confidence: float, text: str) -> None:
    """Below a threshold of up to three decimals never prints as reaching it (0.9199 is not
    "0.92"), and a value exactly at one is not printed under it either (0.29 is "0.290")."""
    assert confidence_text(confidence) == text
