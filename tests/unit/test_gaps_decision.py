"""``limits.max_pixels`` is "at most": a picture of exactly that many pixels is handled like any
other (the model decides), one pixel more is quarantined."""

from __future__ import annotations

from rotwatchd.model.base import Prediction
from rotwatchd.service.decision import Facts, decide, needs_model

LIMIT = 12_000_000
SURE_90 = Prediction.from_probabilities((0.02, 0.94, 0.02, 0.02))


def test_a_picture_of_exactly_max_pixels_is_turned_one_pixel_more_is_quarantined() -> None:
    at_limit = Facts(pixels=LIMIT, prediction=SURE_90)
    assert needs_model(Facts(pixels=LIMIT), LIMIT)
    decision = decide(at_limit, min_confidence=0.6, max_pixels=LIMIT)
    assert (decision.action, decision.correction) == ("rotate", 90)

    over = Facts(pixels=LIMIT + 1, prediction=SURE_90)
    assert not needs_model(Facts(pixels=LIMIT + 1), LIMIT)
    assert decide(over, min_confidence=0.6, max_pixels=LIMIT).action == "quarantine"
