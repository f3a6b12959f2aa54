"""Fine-tune EfficientNet-Lite0 for 4-way orientation on CPU, within a wall-clock budget.

    python -m training.train --minutes 70 --out runs/lite0

Recipe (the best of the variants measured on the validation sources): AdamW, backbone lr 1e-4, head
lr 1e-3, BatchNorm statistics frozen (BN layers in eval mode, their affine weights still train).
The learning rate follows a cosine over *elapsed time*, so the run ends on schedule whatever the
CPU share is. Every epoch writes a checkpoint and a line of validation metrics (val sources only:
never test).

Distillation (``--teacher CKPT --distill A``): every batch holds each upright crop in all 4
rotations, so a frozen teacher's 4-rotation test-time average comes for free from one extra
forward pass over the batch. The student learns ``(1 - A) * CE(hard label) + A * CE(TTA soft
target)``: it gets the ensemble's accuracy in one pass, and crops with no visible "up" (a patch
of sky, a texture) get soft targets instead of a confident hard label.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.augment import Pool, batch, jpeg, load_pool, rotate_ccw, to_input
from training.net import LiteNet, pretrained
from training.sources import ROOT


class Batches(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, data: Path, groups: int, size_at: list[tuple[float, int]],
                 budget_s: float, seed: int, mix: tuple[float, float, float],
                 mirror: float = 0.0) -> None:
        self.data, self.groups, self.size_at, self.mirror = data, groups, size_at, mirror
        self.budget_s, self.seed, self.t0, self.mix = budget_s, seed, time.time(), mix

    def size_now(self) -> int:
        frac = (time.time() - self.t0) / self.budget_s
        return [s for f, s in self.size_at if frac >= f][-1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        torch.set_num_threads(1)
        rng = random.Random(self.seed)
        pool = load_pool(self.data, "train")
        while True:
            x, y = batch(rng, pool, self.groups, self.size_now(), self.mix, self.mirror)
            yield torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)


def val_set(pool: Pool, size: int, max_docs: int = 100
            ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Whole val images, each turned 4 ways and JPEG re-saved (q 75-95), fixed seed."""
    rng = random.Random(1234)
    out = {}
    for name, ims in (("photo", pool.photos), ("doc", pool.docs[:max_docs])):
        xs, ys = [], []
        for im in ims:
            for k in range(4):
                xs.append(to_input(jpeg(rng, rotate_ccw(im.convert("RGB"), k), 75, 95), size))
                ys.append(k)
        out[name] = (torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(),
                     torch.tensor(ys))
    return out


# TTA_INDEX[m, u] = (u + m) % 4 and SHIFT[k, j] = (j - k) % 4, for tta_targets.
TTA_INDEX = torch.tensor([[(u + m) % 4 for u in range(4)] for m in range(4)])
SHIFT = torch.tensor([[(j - k) % 4 for j in range(4)] for k in range(4)])


def tta_targets(logits: torch.Tensor) -> torch.Tensor:
    """Soft targets from a teacher's logits on batches laid out as [crop][rotation k = 0..3].

    Rotation m of a crop predicted as class j says the crop itself is turned (j - m): averaging
    the four views gives the teacher's belief b[u] that the crop is turned u, and rotation k's
    target is b shifted by k. This is exactly the 4-rotation test-time-augmentation ensemble.
    """
    q = logits.softmax(1).view(-1, 4, 4)  # [crop, m, class]
    belief = q.gather(2, TTA_INDEX.expand(q.shape[0], 4, 4)).mean(1)  # [crop, u]
    return belief[:, SHIFT].reshape(-1, 4)  # [crop * 4 rotations, class]


def freeze_bn(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


@torch.no_grad()
def evaluate(net: LiteNet, sets: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    net.eval()
    res = {}
    for name, (x, y) in sets.items():
        logits = torch.cat([net(x[i : i + 64]) for i in range(0, len(x), 64)])
        res[f"{name}_acc"] = float((logits.argmax(1) == y).float().mean())
        res[f"{name}_nll"] = float(nn.functional.cross_entropy(logits, y))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=ROOT / "data")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "lite0")
    p.add_argument("--minutes", type=float, default=70)
    p.add_argument("--groups", type=int, default=8, help="upright crops per batch (x4 rotations)")
    p.add_argument("--steps-per-epoch", type=int, default=120)
    p.add_argument("--sizes", default="0:112,0.4:128", help="frac_of_time:input_size,...")
    p.add_argument("--lr-backbone", type=float, default=1e-4)
    p.add_argument("--lr-head", type=float, default=1e-3)
    p.add_argument("--init", type=Path, default=None, help="resume weights from a checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="compute threads (the data worker takes another core)")
    p.add_argument("--teacher", type=Path, default=None,
                   help="distil this checkpoint's 4-rotation TTA ensemble into the student")
    p.add_argument("--distill", type=float, default=0.5, help="weight of the TTA soft target")
    p.add_argument("--mix", default="0.45,0.25,0.3", help="photos,composites,documents shares")
    p.add_argument("--mirror", type=float, default=0.0,
                   help="chance of a left-right flip of a photo or composite (never documents)")
    p.add_argument("--freeze-blocks", type=int, default=3,
                   help="stem + this many first MBConv blocks stay at their ImageNet weights")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    size_at = [(float(f), int(s)) for f, s in (t.split(":") for t in a.sizes.split(","))]
    budget = a.minutes * 60

    net = pretrained(4)
    if a.init:
        net.load_state_dict(torch.load(a.init, map_location="cpu"))
    frozen = [net._conv_stem, net._bn0, *net._blocks[: a.freeze_blocks]]
    for m in frozen:  # low-level filters are generic; skipping their backward saves ~25 %
        for q in m.parameters():
            q.requires_grad_(False)
    head = list(net._fc.parameters())
    backbone = [q for n, q in net.named_parameters()
                if not n.startswith("_fc.") and q.requires_grad]
    opt = torch.optim.AdamW([{"params": backbone, "lr": a.lr_backbone},
                             {"params": head, "lr": a.lr_head}], weight_decay=1e-4)
    base = [a.lr_backbone, a.lr_head]
    mix = tuple(float(v) for v in a.mix.split(","))
    ds = Batches(a.data, a.groups, size_at, budget, a.seed, mix, a.mirror)  # type: ignore[arg-type]
    teacher = None
    if a.teacher:
        teacher = pretrained(4)
        teacher.load_state_dict(torch.load(a.teacher, map_location="cpu"))
        teacher.eval()
        for q in teacher.parameters():
            q.requires_grad_(False)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1, prefetch_factor=4)
    val_pool = load_pool(a.data, "val")
    vsets = {s: val_set(val_pool, s) for s in sorted({s for _, s in size_at})}
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    t0 = time.time()
    ds.t0 = t0
    log = open(a.out / "log.jsonl", "a")  # noqa: SIM115 - appended to for the whole run
    step, epoch, seen = 0, 0, 0
    it = iter(loader)
    while True:
        net.train()
        freeze_bn(net)
        tl, tc, tn, te = 0.0, 0, 0, time.time()
        for _ in range(a.steps_per_epoch):
            frac = (time.time() - t0) / budget
            if frac >= 1:
                break
            warm = min(1.0, step / 30)
            for g, b in zip(opt.param_groups, base, strict=True):
                g["lr"] = b * warm * 0.5 * (1 + math.cos(math.pi * frac))
            x, y = next(it)
            logits = net(x)
            loss = loss_fn(logits, y)
            if teacher is not None:
                with torch.no_grad():
                    soft = tta_targets(teacher(x))
                soft_loss = -(soft * logits.log_softmax(1)).sum(1).mean()
                loss = (1 - a.distill) * loss + a.distill * soft_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            seen += len(y)
            tl += loss.item() * len(y)
            tc += int((logits.argmax(1) == y).sum())
            tn += len(y)
        epoch += 1
        size = x.shape[-1]
        metrics = evaluate(net, vsets[size]) if size in vsets else {}
        row = {"epoch": epoch, "step": step, "seen": seen, "size": int(size),
               "elapsed_min": round((time.time() - t0) / 60, 2),
               "img_per_s": round(tn / max(1e-6, time.time() - te), 1),
               "train_loss": round(tl / max(1, tn), 4), "train_acc": round(tc / max(1, tn), 4),
               **{k: round(v, 4) for k, v in metrics.items()}}
        print(json.dumps(row), flush=True)
        log.write(json.dumps(row) + "\n")
        log.flush()
        torch.save(net.state_dict(), a.out / f"epoch{epoch:03d}.pt")
        torch.save(net.state_dict(), a.out / "last.pt")
        if (time.time() - t0) >= budget:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
