"""A checkpoint recovered from the float32 export computes what the file computes (needs the
[train] extra: torch)."""

from __future__ import annotations

import pytest
from helpers.paths import REPO_ROOT

torch = pytest.importorskip("torch")


from training.recover import max_logit_gap, recover  # noqa: E402 - only importable with torch

F32 = REPO_ROOT / "bench" / "models" / "orientation-f32.tflite"


def test_recovered_network_matches_the_file_and_a_changed_one_does_not() -> None:
    net = recover(F32)
    assert max_logit_gap(net, F32, 160, samples=2) < 1e-3
    with torch.no_grad():
        net._fc.bias[1] += 0.5
    assert max_logit_gap(net, F32, 160, samples=2) > 0.4
