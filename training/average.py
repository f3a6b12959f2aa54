"""Average the weights of several checkpoints of one run (stochastic weight averaging, offline).

    python -m training.average runs/lite0-s3/epoch0{12..23}.pt --out runs/lite0-s3/swa.pt

The checkpoints of the second half of a cosine run sit around one basin; their mean usually
lands nearer its centre than any one of them, which generalises a little better and gives
smoother confidences. BatchNorm statistics are frozen during fine-tuning (training/net.py), so
the averaged network needs no BatchNorm re-estimation: every checkpoint carries the same ones.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

import torch


def average(paths: list[Path]) -> OrderedDict[str, torch.Tensor]:
    """Element-wise mean of the floating-point tensors; integer buffers come from the first."""
    if not paths:
        raise ValueError("no checkpoints to average")
    states = [torch.load(p, map_location="cpu") for p in paths]
    keys = list(states[0])
    for p, sd in zip(paths[1:], states[1:], strict=True):
        if list(sd) != keys:
            raise ValueError(f"{p}: not the same network as {paths[0]}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k in keys:
        first = states[0][k]
        if first.is_floating_point():
            out[k] = torch.stack([sd[k] for sd in states]).mean(0).to(first.dtype)
        else:
            out[k] = first.clone()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    torch.save(average(a.checkpoints), a.out)
    print(f"averaged {len(a.checkpoints)} checkpoints -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
