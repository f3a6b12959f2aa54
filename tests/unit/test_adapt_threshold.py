"""The personal head's threshold rule: a Clopper-Pearson upper bound on wrong among every
held-out decision, and the personal head's own decisions within the margin.

The cases are built directly (a ``Case`` is plain data: truth, prediction, confidence): the
rule is arithmetic on them, and the counts that decide it are the point of each test.
"""

from __future__ import annotations

import math

import pytest

from rotwatchd.adapt.fit import (
    FitSettings,
    binomial_cdf,
    bounded_threshold,
    fallback_cases,
    judge,
    risk_upper_bound,
    within_risk,
)
from rotwatchd.evaluation.accuracy import Case

SETTINGS = FitSettings()  # 1 % target, 95 % bound, own decisions at 0.75 % counting one more
SHIPPED_THRESHOLD = 0.965


def _cases(right: int, wrong: int, confidence: float, name: str) -> list[Case]:
    return ([Case("exif", 0, 0, confidence, f"{name}-r{i}") for i in range(right)]
            + [Case("exif", 0, 90, confidence, f"{name}-w{i}") for i in range(wrong)])


def _held_out(sure: int, own_right: int, own_wrong: int,
              unsure: int = 200) -> tuple[list[Case], list[Case]]:
    """Personal and shipped held-out cases, in the same order: ``sure`` cases the shipped
    head decides (right), ``own_right`` + ``own_wrong`` the personal head decides at 0.99
    where the shipped head is unsure, and ``unsure`` that both get wrong at 0.5."""
    shipped = (_cases(sure, 0, 0.99, "sure") + _cases(own_right + own_wrong, 0, 0.6, "own")
               + _cases(0, unsure, 0.5, "rest"))
    personal = (_cases(sure, 0, 0.99, "sure") + _cases(own_right, own_wrong, 0.99, "own")
                + _cases(0, unsure, 0.5, "rest"))
    return personal, shipped


def test_the_bound_has_the_closed_form_with_no_errors_and_the_textbook_value() -> None:
    for n in (10, 150, 299, 300, 1200):
        assert risk_upper_bound(0, n, 0.95) == pytest.approx(1 - 0.05 ** (1 / n), abs=1e-12)
    assert risk_upper_bound(1, 10, 0.95) == pytest.approx(0.3942, abs=1e-4)
    assert risk_upper_bound(0, 150, 0.95) > 0.0196  # 0 of 150 still allows 2 %
    assert risk_upper_bound(3, 3, 0.95) == 1.0 and risk_upper_bound(0, 0, 0.95) == 1.0


def test_at_the_bound_the_binomial_tail_is_one_minus_the_confidence() -> None:
    for wrong, decided in ((1, 509), (3, 208), (7, 1200)):
        bound = risk_upper_bound(wrong, decided, 0.95)
        assert binomial_cdf(wrong, decided, bound) == pytest.approx(0.05, abs=1e-9)
        assert bound > wrong / decided


def test_the_binomial_tail_is_the_exact_sum() -> None:
    for n, p in ((30, 0.01), (30, 0.2), (200, 0.05)):
        for k in range(0, 12):
            exact = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
            assert binomial_cdf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-15)
    assert binomial_cdf(5, 5, 0.3) == 1.0 and binomial_cdf(-1, 5, 0.3) == 0.0


def test_within_risk_is_the_bound_compared_with_the_target() -> None:
    for decided in (50, 150, 298, 299, 300, 472, 474, 509, 1200):
        for wrong in range(8):
            assert within_risk(wrong, decided, 0.01, 0.95) == (
                risk_upper_bound(wrong, decided, 0.95) <= 0.01), (wrong, decided)
    assert not within_risk(0, 0, 0.01, 0.95)


def test_counts_the_bound_cannot_take_are_refused() -> None:
    for wrong, decided, confidence in ((2, 1, 0.95), (-1, 5, 0.95), (0, 5, 1.0), (0, 5, 0.0)):
        with pytest.raises(ValueError):
            risk_upper_bound(wrong, decided, confidence)


def test_a_threshold_too_few_cases_vouch_for_is_not_chosen() -> None:
    """140 right answers of its own pass the margin ((0 + 1) / 141 = 0.71 %), but 140 cases
    without an error still allow 2.1 %: the bound keeps the head from deciding."""
    personal, shipped = _held_out(sure=0, own_right=140, own_wrong=0)
    own = [p for p, s in zip(personal, shipped, strict=True) if s.confidence < SHIPPED_THRESHOLD]
    every = fallback_cases(personal, shipped, SHIPPED_THRESHOLD)
    assert bounded_threshold(own, every, SETTINGS) == 1.0
    verdict = judge(personal, shipped, SHIPPED_THRESHOLD, SETTINGS, 85)
    assert not verdict.accepted and "upper bound" in verdict.reason


def test_with_the_shipped_heads_sure_decisions_the_same_answers_are_vouched_for() -> None:
    """The same 140 with 200 the shipped head decides right: 0 wrong of 340 is within 1 %
    at 95 % (0.88 %), so the personal head decides them, at its own confidence."""
    personal, shipped = _held_out(sure=200, own_right=140, own_wrong=0)
    own = [p for p, s in zip(personal, shipped, strict=True) if s.confidence < SHIPPED_THRESHOLD]
    every = fallback_cases(personal, shipped, SHIPPED_THRESHOLD)
    threshold = bounded_threshold(own, every, SETTINGS)
    assert 0.5 < threshold <= 0.99
    verdict = judge(personal, shipped, SHIPPED_THRESHOLD, SETTINGS, 135)
    assert verdict.accepted, verdict.reason
    assert verdict.personal is not None and verdict.personal.correct == 340
    assert "0 wrong of all 340 decided, 95% upper bound 0.88%" in verdict.reason


def test_the_own_decisions_still_hold_the_margin_when_the_shipped_ones_are_many() -> None:
    """1 wrong of 150 of its own ((1 + 1) / 151 = 1.3 %): every decision together (1 of 1150)
    would pass the bound, the own rule does not."""
    personal, shipped = _held_out(sure=1000, own_right=149, own_wrong=1)
    own = [p for p, s in zip(personal, shipped, strict=True) if s.confidence < SHIPPED_THRESHOLD]
    every = fallback_cases(personal, shipped, SHIPPED_THRESHOLD)
    assert within_risk(1, 1150, SETTINGS.target_risk, SETTINGS.confidence)
    assert bounded_threshold(own, every, SETTINGS) == 1.0


def test_a_stricter_confidence_asks_for_more_cases() -> None:
    personal, shipped = _held_out(sure=200, own_right=140, own_wrong=0)
    own = [p for p, s in zip(personal, shipped, strict=True) if s.confidence < SHIPPED_THRESHOLD]
    every = fallback_cases(personal, shipped, SHIPPED_THRESHOLD)
    assert bounded_threshold(own, every, FitSettings(confidence=0.95)) < 1.0
    assert bounded_threshold(own, every, FitSettings(confidence=0.99)) == 1.0  # 0 of 340: 1.35 %
