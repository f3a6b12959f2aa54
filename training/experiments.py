"""Side experiments on the validation sources: 4-rotation TTA (the would-be distillation
teacher) and magnitude pruning before quantization.

    python -m training.experiments runs/lite0/last.pt

Validation only (data split "val"): these numbers decide what ships, so the test sources stay
untouched. Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from training.augment import SERVE_SIZE, load_pool
from training.export import load_net
from training.sources import ROOT
from training.train import val_set


@torch.no_grad()
def logits_of(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(x[i : i + 64]) for i in range(0, len(x), 64)])


@torch.no_grad()
def tta_probs(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Average over the 4 extra turns: an input turned r more quarter turns CCW has class
    (k + r) mod 4, so its probabilities are rolled back by r before averaging."""
    total = torch.zeros(len(x), 4)
    for r in range(4):
        p = torch.softmax(logits_of(net, torch.rot90(x, r, dims=(2, 3))), dim=1)
        total += torch.roll(p, shifts=-r, dims=1)
    return total / 4


def prune_(net: nn.Module, sparsity: float) -> None:
    """Global magnitude pruning of every conv/linear weight except depthwise and the stem."""
    weights = [m.weight for m in net.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)
               and not (isinstance(m, nn.Conv2d) and (m.groups > 1 or m.in_channels == 3))]
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    cut = torch.quantile(flat[torch.randperm(len(flat))[:1_000_000]], sparsity)
    with torch.no_grad():
        for w in weights:
            w.mul_((w.abs() > cut).float())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("--size", type=int, default=SERVE_SIZE)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    sets = val_set(load_pool(ROOT / "data", "val"), a.size, max_docs=100)
    net = load_net(a.checkpoint)
    for name, (x, y) in sets.items():
        single = (logits_of(net, x).argmax(1) == y).float().mean().item()
        tta = (tta_probs(net, x).argmax(1) == y).float().mean().item()
        print(json.dumps({"set": name, "single_pass": round(single, 4), "tta4": round(tta, 4)}),
              flush=True)
    for sparsity in (0.3, 0.5):
        pruned = load_net(a.checkpoint)
        prune_(pruned, sparsity)
        accs = {name: round((logits_of(pruned, x).argmax(1) == y).float().mean().item(), 4)
                for name, (x, y) in sets.items()}
        print(json.dumps({"pruned_sparsity": sparsity, **accs}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
