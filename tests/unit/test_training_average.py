"""Offline weight averaging of checkpoints (needs the [train] extra: torch)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training.average import average  # noqa: E402 - only importable with torch


def _save(path: Path, weight: float, steps: int) -> Path:
    torch.save({"conv.weight": torch.full((2, 2), weight),
                "bn.num_batches_tracked": torch.tensor(steps)}, path)
    return path


def test_float_tensors_are_averaged_and_integer_buffers_kept(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"e{i}.pt", w, 7) for i, w in enumerate([1.0, 2.0, 6.0])]
    sd = average(paths)
    assert torch.equal(sd["conv.weight"], torch.full((2, 2), 3.0))
    assert sd["bn.num_batches_tracked"].item() == 7
    assert sd["bn.num_batches_tracked"].dtype == torch.int64


def test_checkpoints_of_different_networks_are_refused(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.pt", 1.0, 1)
    b = tmp_path / "b.pt"
    torch.save({"other.weight": torch.zeros(1)}, b)
    with pytest.raises(ValueError, match="not the same network"):
        average([a, b])
