"""Fit the softmax temperature and pick the review threshold, on validation sources only.

    python -m training.calibrate models/orientation.tflite

Validation sources (never trained on, never the test sources): data/eval/val-photos/* and
data/eval/val-docs. Each image is turned 4 ways and JPEG re-saved exactly like
``rotwatchd eval`` does. The temperature minimises the negative log-likelihood of the scene
network; the threshold is the lowest confidence at which the shipped cue set (scene + faces)
is wrong on at most ``--target-risk`` of the decided validation photos, once for the default
one-pass backend (``min_confidence``), once for the 4-pass ensemble backend ``litert-tta``
(``tta_min_confidence``) and once for the adaptive default backend, which escalates to 4 passes
below ``min_confidence`` from ``escalate_from`` up (``cascade_min_confidence``). All go into the
model's JSON sidecar, which the runtime reads.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from rotwatchd.evaluate import Case, resave, risk_coverage, run_cases, turned, upright_images
from rotwatchd.model.base import CORRECTIONS, Prediction
from rotwatchd.model.fusion import escalates, fuse, load_fused
from rotwatchd.model.litert import LiteRTClassifier, as_probs, preprocess, softmax, tta_average
from training.augment import SERVE_SIZE
from training.sources import ROOT

VAL_PHOTOS = ROOT / "data" / "eval" / "val-photos"
VAL_DOCS = ROOT / "data" / "eval" / "val-docs"


def scene_logits(model: Path, folders: list[Path], seed: int = 11
                 ) -> tuple[np.ndarray, np.ndarray]:
    from PIL import ImageOps

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


class BothWays:
    """Classifier that answers with one pass and also records the 4-pass answer.

    Both come from the same preprocessed image and face scores (the 4-pass ensemble reuses the
    first view), so one run over the validation cases yields the one-pass, the 4-pass and the
    adaptive cascade's confidences for the very same decoded files.
    """

    def __init__(self, model: Path) -> None:
        self.fused = load_fused(model, 1)
        self.pairs: list[tuple[Prediction, Prediction]] = []

    def predict(self, image: Image.Image) -> Prediction:
        scene_net, faces_cue = self.fused.scene, self.fused.faces
        arr = preprocess(image, scene_net.input_size)
        views = np.stack([scene_net.view(arr, m) for m in range(4)])
        faces = faces_cue.scores(image) if faces_cue is not None else None
        one, four = (self.fused._prediction(s, faces, fuse(s, faces, self.fused.params))
                     for s in (as_probs(views[0]), as_probs(tta_average(views))))
        self.pairs.append((one, four))
        return one

    def close(self) -> None:
        self.fused.close()


def val_cases(model: Path, draws: int = 3) -> tuple[list[Case], list[Case]]:
    """One-pass and 4-pass cases of the validation photos (same files, same order).

    The photos are turned and JPEG re-saved ``draws`` times (seeds 3, 4, …: other qualities and
    chroma) and the cases pooled: with one draw, a single borderline case flipping above or
    below a threshold moved the chosen threshold by a whole step.
    """
    clf = BothWays(model)
    images = upright_images(VAL_PHOTOS)
    try:
        one = [c for seed in range(3, 3 + draws)
               for c in run_cases(clf, images, "jpeg", (75, 95), 1024, seed=seed)]
    finally:
        clf.close()
    four = [Case(c.group, c.truth, p4.correction, p4.confidence)
            for c, (_p1, p4) in zip(one, clf.pairs, strict=True)]
    return one, four


def cascade(one: list[Case], four: list[Case], escalate_below: float,
            escalate_from: float = 0.0) -> list[Case]:
    """What ``AdaptiveClassifier`` answers: the one-pass case unless its confidence is in
    [``escalate_from``, ``escalate_below``), then the 4-pass case."""
    return [b if escalates(a.confidence, escalate_from, escalate_below) else a
            for a, b in zip(one, four, strict=True)]


def pick_escalation(one: list[Case], four: list[Case], escalate_below: float,
                    target_risk: float) -> tuple[float, float, list[dict[str, float]]]:
    """(escalate_from, cascade threshold, its rows): the highest floor on a 0.05 grid below
    which escalating wins nothing, i.e. whose cascade, at its own threshold, decides as many
    validation cases correctly as escalating every unsure case; each floor's cascade gets its
    own threshold by :func:`pick_threshold`."""

    def correct(floor: float) -> tuple[int, float, list[dict[str, float]]]:
        cases = cascade(one, four, escalate_below, floor)
        threshold, rows = pick_threshold(cases, target_risk)
        right = sum(c.confidence >= threshold and c.truth == c.predicted for c in cases)
        return right, threshold, rows

    best, threshold, rows = correct(0.0)
    chosen = 0.0
    for floor in np.arange(0.05, escalate_below, 0.05):
        right, thr, r = correct(round(float(floor), 2))
        if right >= best:
            chosen, threshold, rows = round(float(floor), 2), thr, r
    return chosen, threshold, rows


def pick_threshold(cases: list[Case], target_risk: float
                   ) -> tuple[float, list[dict[str, float]]]:
    """Lowest threshold whose risk on these validation cases is at most ``target_risk``."""
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
    one, four = val_cases(a.model, a.draws)
    threshold, rows = pick_threshold(one, a.target_risk)
    tta_threshold, tta_rows = pick_threshold(four, a.target_risk)
    floor, cascade_threshold, cascade_rows = pick_escalation(one, four, threshold,
                                                             a.target_risk)
    meta = {"input_size": a.size, "temperature": round(temp, 4),
            "min_confidence": threshold, "tta_min_confidence": tta_threshold,
            "cascade_min_confidence": cascade_threshold, "escalate_from": floor,
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
    escalated = sum(escalates(c.confidence, floor, threshold) for c in one) / len(one)
    print(f"val photos, adaptive (4 passes for {escalated:.1%} of cases), at its threshold:",
          [r for r in cascade_rows if r["threshold"] == cascade_threshold])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
