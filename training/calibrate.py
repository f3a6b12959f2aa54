"""Fit the softmax temperature and pick the review threshold, on validation sources only.

    python -m training.calibrate models/orientation.tflite

Validation sources (never trained on, never the test sources): data/eval/val-photos/* and
data/eval/val-docs. Each image is turned 4 ways and JPEG re-saved exactly like
``rotwatchd eval`` does. The temperature minimises the negative log-likelihood of the scene
network; the threshold is the lowest confidence at which the shipped cue set (scene + faces)
is wrong on at most ``--target-risk`` of the decided validation photos, once for the default
one-pass backend (``min_confidence``) and once for the 4-pass ensemble backend ``litert-tta``
(``tta_min_confidence``). All go into the model's JSON sidecar, which the runtime reads.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from rotwatchd.evaluate import resave, risk_coverage, run_cases, turned, upright_images
from rotwatchd.model.base import CORRECTIONS
from rotwatchd.model.fusion import load_fused
from rotwatchd.model.litert import LiteRTClassifier, softmax
from training.augment import SERVE_SIZE
from training.sources import ROOT

VAL_PHOTOS = ROOT / "data" / "eval" / "val-photos"
VAL_DOCS = ROOT / "data" / "eval" / "val-docs"


def scene_logits(model: Path, folders: list[Path], seed: int = 11
                 ) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, ImageOps

    clf = LiteRTClassifier(model, threads=1)
    rng = random.Random(seed)
    zs, ys = [], []
    for folder in folders:
        for _group, path in upright_images(folder):
            with Image.open(path) as raw:
                im = ImageOps.exif_transpose(raw).convert("RGB")
            for k, corr in enumerate(CORRECTIONS):
                zs.append(clf.logits(resave(turned(im, corr), "jpeg", rng.randint(75, 95))))
                ys.append(k)
    return np.stack(zs), np.array(ys)


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    best_t, best_nll = 1.0, float("inf")
    for t in np.exp(np.linspace(np.log(0.3), np.log(5.0), 80)):
        nll = -float(np.mean([np.log(softmax(zi, float(t))[yi] + 1e-12)
                              for zi, yi in zip(z, y, strict=True)]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def pick_threshold(model: Path, target_risk: float, passes: int = 1, draws: int = 3
                   ) -> tuple[float, list[dict[str, float]]]:
    """Lowest threshold whose risk on the validation photos is at most ``target_risk``.

    The photos are turned and JPEG re-saved ``draws`` times (seeds 3, 4, …: other qualities and
    chroma) and the cases pooled: with one draw, a single borderline case flipping above or
    below a threshold moved the chosen threshold by a whole step.
    """
    clf = load_fused(model, 1, passes)
    images = upright_images(VAL_PHOTOS)
    try:
        cases = [c for seed in range(3, 3 + draws)
                 for c in run_cases(clf, images, "jpeg", (75, 95), 1024, seed=seed)]
    finally:
        clf.close()
    grid = [round(float(t), 3) for t in np.arange(0.3, 0.996, 0.005)]
    rows = risk_coverage(cases, grid)
    ok = [r for r in rows if r.risk <= target_risk and r.coverage > 0]
    chosen = ok[0].threshold if ok else 0.99
    return chosen, [r.__dict__ for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", type=Path)
    p.add_argument("--size", type=int, default=SERVE_SIZE)
    p.add_argument("--target-risk", type=float, default=0.01)
    p.add_argument("--draws", type=int, default=3, help="JPEG re-save draws pooled per photo")
    a = p.parse_args(argv)
    sidecar = a.model.with_suffix(".json")
    sidecar.write_text(json.dumps({"input_size": a.size, "temperature": 1.0}))
    z, y = scene_logits(a.model, [VAL_PHOTOS, VAL_DOCS])
    temp = fit_temperature(z, y)
    print(f"temperature {temp:.3f} (val cases {len(y)}, raw acc {(z.argmax(1) == y).mean():.3f})")
    sidecar.write_text(json.dumps({"input_size": a.size, "temperature": temp}))
    threshold, rows = pick_threshold(a.model, a.target_risk, draws=a.draws)
    tta_threshold, tta_rows = pick_threshold(a.model, a.target_risk, passes=4, draws=a.draws)
    meta = {"input_size": a.size, "temperature": round(temp, 4),
            "min_confidence": threshold, "tta_min_confidence": tta_threshold,
            "calibrated_on": "validation photos: gcompris erase+clickgame activities, "
                             "lxqt-themes, gimp-help-en, cimg-doc postcards, "
                             "gnome-control-center-data, psychtoolbox-3-common, "
                             "labelme-examples; val documents",
            "target_risk": a.target_risk, "draws": a.draws}
    sidecar.write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))
    print("val photos at threshold:", [r for r in rows if r["threshold"] == threshold])
    print("val photos, 4-pass, at its threshold:",
          [r for r in tta_rows if r["threshold"] == tta_threshold])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
