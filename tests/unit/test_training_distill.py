"""The distillation target is the 4-rotation TTA ensemble (needs the [train] extra: torch)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.train import tta_targets  # noqa: E402 - only importable with torch


def _certain(classes_per_view: list[int]) -> object:
    logits = torch.full((len(classes_per_view), 4), -30.0)
    for row, cls in enumerate(classes_per_view):
        logits[row, cls] = 30.0
    return logits


def test_upright_crop_seen_right_in_every_view_gives_the_labels() -> None:
    # rotation k of an upright crop predicted as class k, for two crops
    targets = tta_targets(_certain([0, 1, 2, 3, 0, 1, 2, 3]))
    assert targets.argmax(1).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert torch.allclose(targets.sum(1), torch.ones(8))


def test_teacher_belief_that_the_crop_is_turned_moves_every_target() -> None:
    # the teacher thinks the "upright" crop is itself turned once: view m -> class m + 1
    targets = tta_targets(_certain([1, 2, 3, 0]))
    assert targets.argmax(1).tolist() == [1, 2, 3, 0]


def test_one_dissenting_view_becomes_a_soft_target() -> None:
    # views 0, 1, 3 right; view 2 (upside down) read as "no turn needed"
    targets = tta_targets(_certain([0, 1, 0, 3]))
    for k in range(4):
        assert targets[k, k] == pytest.approx(0.75, abs=1e-6)
        assert targets[k, (k + 2) % 4] == pytest.approx(0.25, abs=1e-6)
