"""The escalation experiment's view bookkeeping: turns and mirror images of one image must
all be read back as beliefs about the same original (pure; no model)."""

from __future__ import annotations

import numpy as np
import pytest

from training.escalation import CANDIDATES, belief


def _one_hot(cls: int) -> np.ndarray:
    return np.eye(4)[cls % 4]


@pytest.mark.parametrize("original", [0, 1, 2, 3])
@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_consistent_views_give_the_original_class(original: int, name: str) -> None:
    # the image turned m more says class original + m; its mirror image turned m more is
    # turned m - original (a flip reverses the sense of every turn)
    image = np.stack([_one_hot(original + m) for m in range(4)])
    mirrored = np.stack([_one_hot(m - original) for m in range(4)])
    turns, mirrors = CANDIDATES[name]
    assert belief((image, mirrored, None), turns, mirrors).tolist() == _one_hot(original).tolist()


def test_mirror_views_follow_numpy_flips() -> None:
    # the identity behind the bookkeeping: flipping an image turned c equals turning the
    # flipped image by -c
    arr = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    for c in range(4):
        assert np.array_equal(np.fliplr(np.rot90(arr, c)), np.rot90(np.fliplr(arr), -c))
