"""The text network alone on the pooled validation sets, and a cue table with its answers.

    python -m training.text_eval MODEL_DIR/text/text.tflite --base TABLE.npz --out NEW.npz \\
        [--val data/validation --val data/realistic-val]
    python -m training.text_eval --base TABLE.npz [--sidecar MODEL.json] [--val ...]

Decodes exactly the cases of ``training.calibrate.cue_table`` (same image order, seed, JPEG
draws, 384 px cap) and runs only the text network (``rotwatchd.model.text.TextCue``, LiteRT,
the daemon's runtime) on each case as ``TextCue.views`` does: its first view (both ends of
the long side) and the 3 other turns of its centre crop. ``--base`` is a cue table that
``training.calibrate --table`` wrote for the same sets: its text column is replaced by this
network's answers and the result written to ``--out``, so ``training.calibrate --table NEW.npz``
calibrates the whole model with this text network without rerunning the scene network.

Printed per kind (validation only; never the test sets): one-pass raw accuracy, and the share
decided correctly when the cases whose top probability reaches the lowest threshold that keeps
at most 1 % of the decided cases wrong (over all kinds pooled) are decided, and at the kind's
own such threshold; the same for the 4-turn average. With ``--base`` alone, the table's own text
column is reported, and with ``--sidecar`` (what ``training.calibrate --table`` wrote for that
table) the whole model's adaptive default per kind as well.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rotwatchd.evaluation.accuracy import resave, turned
from rotwatchd.model.base import CORRECTIONS
from rotwatchd.model.scene import belief
from rotwatchd.model.text import TextCue
from rotwatchd.service.processor import MODEL_INPUT_SIDE
from training.calibrate import VAL, validation_images


def text_column(model: Path, images: list[tuple[str, Path]], draws: int = 2,
                seed: int = 3) -> np.ndarray:
    """(cases, 4 turns, 4) text probabilities in ``cue_table``'s case order."""
    cue = TextCue(model, threads=1)
    out = []
    try:
        for draw in range(draws):
            rng = random.Random(seed + draw)
            for _group, path in images:
                with Image.open(path) as raw:
                    im = ImageOps.exif_transpose(raw).convert("RGB")
                if max(im.size) > MODEL_INPUT_SIDE:
                    im.thumbnail((MODEL_INPUT_SIDE, MODEL_INPUT_SIDE), Image.Resampling.BILINEAR)
                for corr in CORRECTIONS:
                    case = resave(turned(im, corr), "jpeg", rng.randint(75, 95)).convert("RGB")
                    out.append(cue.views(case, 4))
    finally:
        cue.close()
    return np.array(out)


def decided_at(conf: np.ndarray, right: np.ndarray, risk: float = 0.01) -> float:
    """The lowest confidence threshold whose decided cases are at most ``risk`` wrong."""
    order = np.argsort(-conf, kind="stable")
    wrong = np.cumsum(~right[order])
    n = np.arange(1, len(conf) + 1)
    ok = np.nonzero(wrong <= risk * n)[0]
    return float(conf[order][ok[-1]]) if len(ok) else float("inf")


def report(text: np.ndarray, truth: np.ndarray, group: np.ndarray, label: str) -> None:
    """Per kind: raw accuracy and share decided correctly at the pooled <= 1 % threshold."""
    for passes in (1, 4):
        probs = np.array([belief(t[:passes]) for t in text])
        pred, conf = probs.argmax(1), probs.max(1)
        right = pred == truth
        t = decided_at(conf, right)
        print(f"{label} {passes}-pass: threshold {t:.4f}")
        print(f"  {'kind':14s} {'cases':>5s} {'raw':>6s} {'decided ok':>10s} {'wrong':>6s} "
              f"{'own threshold: decided ok':>25s}")
        kinds = sorted(set(group.tolist()))
        for kind in ["all", *kinds]:
            sel = np.ones(len(truth), bool) if kind == "all" else group == kind
            dec = sel & (conf >= t)
            own = decided_at(conf[sel], right[sel])
            print(f"  {kind:14s} {sel.sum():5d} {right[sel].mean():6.1%} "
                  f"{(dec & right).sum() / sel.sum():10.1%} "
                  f"{(dec & ~right).sum() / max(1, dec.sum()):6.2%} "
                  f"{(right[sel] & (conf[sel] >= own)).sum() / sel.sum():25.1%}")
        eq = np.mean([right[group == k].mean() for k in kinds])
        print(f"  kinds equal: raw {eq:.1%}")


def whole_model(table: dict[str, np.ndarray], sidecar: Path) -> None:
    """Per kind: raw accuracy and share decided correctly of the adaptive default (one pass;
    the 4-pass ensemble for one-pass confidences from ``escalate_from`` to below
    ``min_confidence``) under the sidecar's weights and threshold, on the table's cases."""
    from training.calibrate import CueTable, cascade, fused_cases

    meta = json.loads(sidecar.read_text())
    tab = CueTable(**{k: table[k] for k in CueTable.__dataclass_fields__})
    temp = meta["temperature"]
    one = fused_cases(tab, temp, 1, meta["scene_weight"], meta["text_weight"],
                      meta["text_weight_sure"], skip_text_from=meta["min_confidence"])
    four = fused_cases(tab, temp, 4, meta["tta_scene_weight"], meta["tta_text_weight"],
                       meta["tta_text_weight_sure"])
    cases = cascade(one, four, meta["min_confidence"], meta["escalate_from"])
    t = meta["cascade_min_confidence"]
    group = np.array([c.group.removesuffix("s") for c in cases])
    right = np.array([c.truth == c.predicted for c in cases])
    conf = np.array([c.confidence for c in cases])
    print(f"whole model, adaptive default ({sidecar}, threshold {t})")
    print(f"  {'kind':14s} {'cases':>5s} {'raw':>6s} {'decided ok':>10s} {'wrong':>6s}")
    kinds = sorted(set(group.tolist()))
    rows = []
    for kind in ["all", *kinds]:
        sel = np.ones(len(cases), bool) if kind == "all" else group == kind
        dec = sel & (conf >= t)
        row = (right[sel].mean(), (dec & right).sum() / sel.sum())
        rows.append(row)
        print(f"  {kind:14s} {sel.sum():5d} {row[0]:6.1%} {row[1]:10.1%} "
              f"{(dec & ~right).sum() / max(1, dec.sum()):6.2%}")
    raw_eq, dec_eq = np.mean(rows[1:], axis=0)
    print(f"  kinds equal: raw {raw_eq:.1%}, decided correctly {dec_eq:.1%}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, nargs="?",
                   help="a text.tflite (none: report the text column of --base as it is)")
    p.add_argument("--val", type=Path, action="append")
    p.add_argument("--base", type=Path, help="a calibrate cue table of the same sets")
    p.add_argument("--out", type=Path, help="where to write the table with this text column")
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--sidecar", type=Path,
                   help="with --base alone: also the whole model under this calibrated sidecar")
    a = p.parse_args(argv)
    images = [image for folder in (a.val or [VAL]) for image in validation_images(folder)]
    truth = np.array([k for _ in range(a.draws) for _ in images for k in range(4)])
    group = np.array([g.removesuffix("s") for _ in range(a.draws) for g, _ in images
                      for _ in range(4)])
    if a.model is None and a.base is None:
        raise SystemExit("give a text model, a --base table, or both")
    table = {}
    if a.base is not None:
        with np.load(a.base) as z:
            table = {k: z[k] for k in z.files}
        if len(table["truth"]) != len(truth) or (table["truth"] != truth).any():
            raise SystemExit(f"{a.base}: not a table of these validation sets")
    if a.model is None:
        report(table["text"], truth, group, str(a.base))
        if a.sidecar is not None:
            whole_model(table, a.sidecar)
        return 0
    text = text_column(a.model, images, a.draws)
    if table:
        print(f"text column vs {a.base}: max |dp| {np.abs(table['text'] - text).max():.2e}")
        table["text"] = text
        if a.out is not None:
            np.savez(a.out, **table)
    report(text, truth, group, str(a.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
